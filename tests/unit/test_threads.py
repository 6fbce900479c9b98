"""Durable threads on the scripted fake model: start, list, history, resume, replay, fork, and their refusals."""

from __future__ import annotations

import json

import pytest

from scale_graph import api, models, threads
from scale_graph.checkpoint import default_target, latest_thread_ids, open_checkpointer
from scale_graph.testing import Reply, earlier_solutions, stage_of
from tests.conftest import SUBPROBLEMS, fake_context, make_script

PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"
DIFFICULTY = {SUBPROBLEMS[0]: '{"difficulty": 0.1}', SUBPROBLEMS[1]: '{"difficulty": 0.1}',
              SUBPROBLEMS[2]: '{"difficulty": 0.9}'}


@pytest.fixture
def offline(monkeypatch) -> None:
    """The fake endpoint is never contacted (the chat model is faked): skip the fail-fast endpoint check."""
    monkeypatch.setattr(api, "check_endpoint", lambda *args, **kwargs: None)


@pytest.fixture
def graph(tmp_path, offline):
    """The SCALE graph on a SQLite thread store in tmp_path."""
    with threads.open_thread_graph(str(tmp_path / "threads.sqlite")) as g:
        yield g


def modes(result) -> list[str]:
    return [s["mode"] for s in result.steps]


def solve_index(body) -> int:
    return earlier_solutions(body)  # sub-problem i is asked with i solved ones before it


def test_a_run_is_a_thread_with_its_history_and_settings(fake_models, graph) -> None:
    fake_models(make_script(difficulty=DIFFICULTY))
    result = threads.start(graph, PROBLEM, context=fake_context(api_key="secret-key"), thread_id="t1")
    assert result.thread_id == "t1" and result.answer == "30"
    assert modes(result) == ["system1", "system1", "system2"]

    [listed] = threads.list_threads(graph)
    assert (listed.thread_id, listed.status, listed.steps_done, listed.steps_total) == ("t1", "done", 3, 3)

    history = threads.history(graph, "t1")
    assert [c.step for c in history] == sorted((c.step for c in history), reverse=True)
    writers = [", ".join(c.writers) for c in reversed(history)]
    assert writers[:6] == ["input", "__start__", "start", "decompose ×2", "select", "assess ×3"]
    assert writers[-1] == "finalize" and history[0].next == ()

    recorded = threads.recorded_context(graph, "t1")
    assert recorded["candidates"] == 2 and recorded["base_url"] == fake_context().base_url
    assert "api_key" not in recorded  # never written to a checkpoint


def test_resume_continues_a_failed_run_without_asking_finished_steps_again(fake_models, graph) -> None:
    good = make_script(difficulty=DIFFICULTY)

    def second_solve_fails(body):
        if stage_of(body) in {"system1", "system2"} and solve_index(body) == 1:
            return Reply(status=400)  # not retryable: the run stops at once
        return good(body)

    fakes = fake_models(second_solve_fails)
    with pytest.raises(models.EndpointError):
        threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    info = threads.info(graph, "t1")
    assert info.status == "error" and info.steps_done == 1 and "400" in (info.error or "")
    asked_before = len(fakes.calls)

    fakes.script = good
    result = threads.resume(graph, "t1")
    assert result.answer == "30" and len(result.steps) == 3
    resumed = fakes.calls[asked_before:]
    assert [stage_of(b) for b in resumed] == ["system1", "system2"]
    assert [solve_index(b) for b in resumed] == [1, 2]
    assert threads.info(graph, "t1").status == "done"


def test_resume_and_start_refuse_what_they_cannot_do(fake_models, graph) -> None:
    fake_models(make_script())
    threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    with pytest.raises(threads.ThreadError, match="has finished"):
        threads.resume(graph, "t1")
    with pytest.raises(threads.ThreadError, match="already exists"):
        threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    with pytest.raises(threads.ThreadError, match="no thread nope"):
        threads.resume(graph, "nope")


def checkpoint_before_solving(graph, thread_id: str, index: int) -> str:
    """The checkpoint whose next step solves sub-problem ``index`` (0-based)."""
    return next(c.checkpoint_id for c in threads.history(graph, thread_id)
                if c.next and c.next[0].startswith("solve_") and c.steps_done == index)


def test_replay_redoes_only_the_steps_after_the_checkpoint(fake_models, graph) -> None:
    fakes = fake_models(make_script(difficulty=DIFFICULTY))
    threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    checkpoint = checkpoint_before_solving(graph, "t1", 2)
    fakes.calls.clear()
    result = threads.replay(graph, "t1", checkpoint)
    assert result.answer == "30"
    assert [(stage_of(b), solve_index(b)) for b in fakes.calls] == [("system2", 2)]


def test_fork_with_a_new_difficulty_reroutes_and_keeps_the_original_branch(fake_models, graph) -> None:
    fakes = fake_models(make_script(difficulty=DIFFICULTY))
    original = threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    checkpoint = checkpoint_before_solving(graph, "t1", 1)
    fakes.calls.clear()
    forked = threads.fork(graph, "t1", checkpoint, difficulties={2: 0.95})
    assert modes(original) == ["system1", "system1", "system2"]
    assert modes(forked) == ["system1", "system2", "system2"]
    assert forked.steps[1]["difficulty"] == 0.95
    # the model's own score stays beside the one the fork set, and the step says why they differ
    assert forked.steps[1]["assessed_difficulty"] == 0.1 and forked.steps[1]["forced"] == "fork→d=0.95"
    assert [stage_of(b) for b in fakes.calls] == ["system2", "system2"]  # no decomposition, no assessment
    notes = [c.note for c in threads.history(graph, "t1") if c.note]
    assert notes == [f"fork of {checkpoint}: d2=0.95, τ=0.2"]
    # the original branch is still there
    assert any(c.checkpoint_id == checkpoint for c in threads.history(graph, "t1"))


def test_fork_with_a_new_threshold_reroutes_and_is_recorded(fake_models, graph) -> None:
    fake_models(make_script(difficulty=DIFFICULTY))
    threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    checkpoint = checkpoint_before_solving(graph, "t1", 0)  # the route to System 1 was already taken
    forked = threads.fork(graph, "t1", checkpoint, overrides={"threshold": -1.0})
    assert modes(forked) == ["system2", "system2", "system2"]
    assert threads.recorded_context(graph, "t1")["threshold"] == -1.0


@pytest.mark.parametrize(("where", "difficulties", "message"), [
    ("before_loop", {}, "before the solve loop"),
    ("end", {}, "nothing left to re-route"),
    ("loop", {1: 0.5}, "already solved"),
    ("loop", {9: 0.5}, "no sub-problem 9"),
    ("loop", {3: 1.5}, r"\[0, 1\]"),
])
def test_fork_refuses_a_change_that_cannot_reroute(fake_models, graph, where, difficulties, message) -> None:
    fake_models(make_script(difficulty=DIFFICULTY))
    threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    history = threads.history(graph, "t1")
    checkpoint = {"before_loop": next(c for c in history if c.next and c.next[0] == "assess").checkpoint_id,
                  "end": history[0].checkpoint_id,
                  "loop": checkpoint_before_solving(graph, "t1", 1)}[where]
    with pytest.raises(threads.ThreadError, match=message):
        threads.fork(graph, "t1", checkpoint, difficulties=difficulties)


def test_checkpoints_are_found_by_unique_prefix(fake_models, graph) -> None:
    fake_models(make_script())
    threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
    full = threads.history(graph, "t1")[3].checkpoint_id
    assert threads.find_checkpoint(graph, "t1", full) == full
    assert threads.find_checkpoint(graph, "t1", full[:-4]) == full
    with pytest.raises(threads.ThreadError, match="ambiguous"):
        threads.find_checkpoint(graph, "t1", full[:4])
    with pytest.raises(threads.ThreadError, match="does not exist"):
        threads.find_checkpoint(graph, "t1", "zzzz")


def test_threads_are_listed_newest_first(fake_models, graph) -> None:
    fake_models(make_script())
    for name in ("a", "b", "c"):
        threads.start(graph, PROBLEM, context=fake_context(), thread_id=name)
    assert [t.thread_id for t in threads.list_threads(graph)] == ["c", "b", "a"]
    assert latest_thread_ids(graph.checkpointer, limit=2) == ["c", "b"]


def test_the_default_store_is_under_scale_home(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SCALE_CHECKPOINTER", raising=False)
    monkeypatch.setenv("SCALE_HOME", str(tmp_path / "home"))
    assert default_target() == str(tmp_path / "home" / "threads.sqlite")
    with open_checkpointer() as saver:
        assert saver is not None
    assert (tmp_path / "home" / "threads.sqlite").exists()
    monkeypatch.setenv("SCALE_CHECKPOINTER", "postgresql://db.example/x")
    assert default_target() == "postgresql://db.example/x"


# --- the commands, in-process ------------------------------------------------------------------------------


def scale(*argv: str) -> int:
    from scale_graph.cli import main

    return main(list(argv))


def test_commands_show_list_history_and_fork(fake_models, offline, tmp_path, capsys) -> None:
    fake_models(make_script(difficulty=DIFFICULTY))
    store = str(tmp_path / "cli.sqlite")
    common = ["--checkpointer", store, "--base-url", fake_context().base_url, "--model", "fake-model",
              "--candidates", "2", "--quiet"]
    assert scale("solve", PROBLEM, "--thread", "t1", *common) == 0
    assert "thread: t1" in capsys.readouterr().out

    assert scale("threads", "--checkpointer", store, "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["thread_id"] == "t1" and listed["status"] == "done"

    assert scale("threads", "--checkpointer", store) == 0  # the table, piped: no column squeezed away
    row = next(line for line in capsys.readouterr().out.splitlines() if " t1 " in line)
    assert "done" in row and "3/3" in row and "30" in row

    assert scale("show", "t1", "--checkpointer", store) == 0
    shown = capsys.readouterr().out
    assert "thread t1: done" in shown and "d=0.90 → system2" in shown and "answer: 30" in shown

    assert scale("history", "t1", "--checkpointer", store, "--json") == 0
    history = json.loads(capsys.readouterr().out)
    before_second = next(c["checkpoint_id"] for c in history
                         if c["next"] and c["next"][0].startswith("solve_") and c["steps_done"] == 1)

    assert scale("fork", "t1", "--checkpoint", before_second[:20], "--set-difficulty", "2=0.9",
                 "--checkpointer", store, "--json", "--quiet") == 0
    forked = json.loads(capsys.readouterr().out)
    assert [s["mode"] for s in forked["steps"]] == ["system1", "system2", "system2"]

    assert scale("resume", "t1", "--checkpointer", store, "--quiet") == 2
    assert "has finished" in capsys.readouterr().err
    assert scale("show", "missing", "--checkpointer", store) == 2
    with pytest.raises(SystemExit):
        scale("fork", "t1", "--checkpoint", before_second, "--checkpointer", store)  # nothing to change

"""Durable threads on the scripted fake model: start, list, history, resume, replay, fork, and their refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from scale_graph import api, models, threads
from scale_graph.checkpoint import default_target, latest_thread_ids, open_checkpointer
from scale_graph.cli.runner import interruptible
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
    with pytest.raises(threads.ThreadFinished, match="has finished") as finished:
        threads.resume(graph, "t1")
    assert finished.value.result.answer == "30"  # the finished run's result, for a caller to show
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

    assert scale("resume", "t1", "--checkpointer", store, "--quiet") == 0  # nothing to do is not a failure
    out, err = capsys.readouterr()
    assert "has finished: nothing to resume" in err and "answer: 30" in out
    assert scale("show", "missing", "--checkpointer", store) == 2
    with pytest.raises(SystemExit):
        scale("fork", "t1", "--checkpoint", before_second, "--checkpointer", store)  # nothing to change


# --- interrupted runs --------------------------------------------------------------------------------------------


def test_a_run_stopped_after_a_steps_result_was_saved_but_before_its_checkpoint_is_incomplete(fake_models,
                                                                                              graph) -> None:
    """Ctrl-C while sub-problem 2 is being solved: the solve finishes and its result is saved as a pending write,
    but no checkpoint takes it in. LangGraph's snapshot then lists no next node; the thread said `done` (1/2 steps,
    no answer) and resume refused it. It is `incomplete`, and resume asks only the sub-problem not yet solved."""
    plain = make_script(difficulty=DIFFICULTY)

    def slow_second_solve(body):
        reply = plain(body)
        if stage_of(body) in {"system1", "system2"} and solve_index(body) == 1:
            reply.delay = 0.5  # the interrupt lands while this request is in flight
        return reply

    def interrupt_on_second_solve(event) -> None:
        if event.get("event") == "solving" and event["index"] == 1:
            raise KeyboardInterrupt  # as Ctrl-C does in the main thread

    fakes = fake_models(slow_second_solve)
    with pytest.raises(KeyboardInterrupt):
        threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1", on_event=interrupt_on_second_solve)
    snap = threads.snapshot(graph, "t1")
    assert snap.next == () and [t.result is not None for t in snap.tasks] == [True]  # saved, not checkpointed
    info = threads.info(graph, "t1")
    assert (info.status, info.steps_done, info.answer) == ("incomplete", 2, None)

    asked = len(fakes.calls)
    result = threads.resume(graph, "t1")
    assert result.answer == "30" and len(result.steps) == 3
    assert [(stage_of(b), solve_index(b)) for b in fakes.calls[asked:]] == [("system2", 2)]
    assert threads.info(graph, "t1").status == "done"


def test_the_first_ctrl_c_stops_the_run_with_keyboard_interrupt_and_says_what_happens(capfd) -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interruptible("t1"):
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(5)  # the handler raises in the main thread at once
    assert signal.getsignal(signal.SIGINT) is before  # restored
    assert "letting the steps in flight finish" in capfd.readouterr().err


# --- one run at a time per thread --------------------------------------------------------------------------------

HOLDER = """
import sys
from scale_graph import threads
with threads.open_thread_graph(sys.argv[1]) as graph, threads.running(graph, sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextmanager
def held_by_another_process(store: str, thread_id: str) -> Iterator[int]:
    """A process holding the thread's run lock (its pid) until the block ends, when it is killed with SIGKILL:
    the operating system lets go of its lock."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, store, thread_id], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            yield proc.pid
        finally:
            proc.kill()
            proc.wait(timeout=10)


def test_a_thread_run_by_another_process_is_refused_naming_it(fake_models, offline, tmp_path, capsys) -> None:
    good = make_script(difficulty=DIFFICULTY)
    fakes = fake_models(lambda body: Reply(status=400) if stage_of(body) in {"system1", "system2"} else good(body))
    store = str(tmp_path / "threads.sqlite")
    with threads.open_thread_graph(store) as graph:
        with pytest.raises(models.EndpointError):
            threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
        fakes.script, asked = good, len(fakes.calls)

        with held_by_another_process(store, "t1") as pid:
            who = f"is being run by another process: pid {pid} on host {socket.gethostname()}"
            with pytest.raises(threads.ThreadBusy, match=who):
                threads.resume(graph, "t1")
            with pytest.raises(threads.ThreadBusy, match=who):  # not "already exists": it is checked under the lock
                threads.start(graph, PROBLEM, context=fake_context(), thread_id="t1")
            assert scale("resume", "t1", "--checkpointer", store, "--quiet") == 4
            assert who in capsys.readouterr().err
            assert len(fakes.calls) == asked  # nothing was asked of the model
            with threads.running(graph, "t2"):  # another thread of the same store is free
                pass

        assert threads.resume(graph, "t1").answer == "30"
    assert list((tmp_path / "threads.sqlite.locks").iterdir()) == []  # each run removes its lock file


def test_the_run_lock_is_reentrant_in_its_thread_and_refused_to_another_thread(graph) -> None:
    refused: list[threads.ThreadBusy] = []

    def run_elsewhere() -> None:
        try:
            with threads.running(graph, "t1"):
                pass
        except threads.ThreadBusy as exc:
            refused.append(exc)

    with threads.running(graph, "t1"):
        with threads.running(graph, "t1"):  # a command holds it around a run that takes it again
            pass
        other = threading.Thread(target=run_elsewhere)
        other.start()
        other.join()
    assert len(refused) == 1 and f"pid {os.getpid()}" in str(refused[0]) and "(this process)" in str(refused[0])
    run_elsewhere()  # let go: the other thread gets it now
    assert len(refused) == 1


def test_a_resume_whose_endpoint_is_down_names_base_url_and_continues_there(fake_models, offline, monkeypatch,
                                                                              tmp_path, capsys) -> None:
    """Re-running the suggested `scale resume T` failed the same way when the recorded endpoint was down."""
    good = make_script(difficulty=DIFFICULTY)
    fakes = fake_models(lambda body: Reply(status=400) if stage_of(body) in {"system1", "system2"} else good(body))
    store = str(tmp_path / "cli.sqlite")
    common = ["--checkpointer", store, "--quiet"]
    assert scale("solve", PROBLEM, "--thread", "t1", "--base-url", fake_context().base_url, "--model", "fake-model",
                 "--candidates", "2", *common) == 1
    capsys.readouterr()

    def down(url: str, api_key: str | None = None) -> None:
        if url == fake_context().base_url:
            raise models.EndpointError(url, "cannot connect (ConnectError); is the server running?", retryable=False)

    monkeypatch.setattr(api, "check_endpoint", down)
    fakes.script = good
    assert scale("resume", "t1", *common) == 1
    err = capsys.readouterr().err
    assert f"model endpoint {fake_context().base_url}: cannot connect" in err
    assert "`scale resume t1 --base-url URL`" in err

    moved = "http://moved.invalid/v1"
    assert scale("resume", "t1", "--base-url", moved, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "30"
    with threads.open_thread_graph(store) as graph:
        assert threads.recorded_context(graph, "t1")["base_url"] == moved  # and later resumes go there too

"""The eval runner: rows per attempt, resumption after a crash, failures, and the ``scale eval`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scale_graph import prompts
from scale_graph.cli import main
from scale_graph.eval.datasets import load_dataset
from scale_graph.eval.methods import get_method
from scale_graph.eval.metrics import compute_all
from scale_graph.eval.results import read_dirs, read_rows
from scale_graph.eval.runner import EvalRun, is_attempt_error, run_eval, stops_run
from scale_graph.models import EndpointError
from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of, user_text
from tests.conftest import fake_context


def write_dataset(path: Path, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
            for i in range(n)
        )
    )
    return path


def doubling_script(body):
    """Answers a baseline's 'What is i + i?' with 2i (correct), boxed; SCALE's stages as scale_script."""
    text = user_text(body)
    if "What is" in text and stage_of(body) == "other":
        i = int(text.split("What is ")[1].split(" ")[0])
        return Reply(content=f"{i} + {i} = {2 * i}, so \\boxed{{{2 * i}}}")
    return scale_script(body)


def make_run(tmp_path, method="cot", n=3, **kw):
    dataset = load_dataset(str(write_dataset(tmp_path / "tiny.jsonl", n)))
    return EvalRun(
        dataset=dataset, method=get_method(method), context=fake_context(), out_dir=tmp_path / "out", **kw
    )


def test_one_row_per_attempt_with_grade_tokens_and_units(fake_models, tmp_path):
    fake_models(doubling_script)
    run = make_run(tmp_path, samples=2, concurrency=2)
    outcome = run_eval(run)
    assert (outcome.done, outcome.skipped, outcome.failed) == (6, 0, [])
    rows = read_rows(run.path)
    assert sorted((r["problem_id"], r["sample"]) for r in rows) == [
        (f"p{i}", s) for i in range(3) for s in (0, 1)
    ]
    row = rows[0]
    assert row["correct"] is True and row["verdict"]["status"] == "ok"
    assert (
        row["method"] == "cot"
        and row["settings"]["samples"] == 2
        and row["settings"]["model"] == "fake-model"
    )
    assert row["tokens"]["completion"] == row["units"][0]["completion_tokens"] > 0
    assert row["tokens"]["by_mode"]["system2"] == row["tokens"]["completion"]
    assert row["unit"] == "sample" and row["wall_seconds"] >= 0
    assert run.path.name.startswith("tiny__cot__")


def test_scale_rows_carry_subproblem_records(fake_models, tmp_path):
    fake_models(scale_script)
    run = make_run(tmp_path, method="scale", n=1)
    run_eval(run)
    (row,) = read_rows(run.path)
    assert [u["mode"] for u in row["units"]] == ["system1", "system2"]
    assert set(row["tokens"]["by_stage"]) == {"decompose", "select", "assess", "solve"}
    assert row["tokens"]["by_mode"]["control"] == sum(
        row["tokens"]["by_stage"][s] for s in ("decompose", "select", "assess")
    )
    assert row["subproblems"] and row["answer"] == "20"


def test_majority_samples_are_votes_in_one_attempt(fake_models, tmp_path):
    fakes = fake_models(doubling_script)
    run = make_run(tmp_path, method="majority", n=2, samples=3)
    run_eval(run)
    rows = read_rows(run.path)
    assert [(r["problem_id"], r["sample"]) for r in sorted(rows, key=lambda r: r["problem_id"])] == [
        ("p0", 0),
        ("p1", 0),
    ]
    assert all(len(r["units"]) == 3 for r in rows) and len(fakes.calls) == 6


def test_rerun_skips_finished_attempts(fake_models, tmp_path):
    fakes = fake_models(doubling_script)
    run = make_run(tmp_path)
    run_eval(run)
    calls = len(fakes.calls)
    again = run_eval(make_run(tmp_path))
    assert (again.done, again.skipped) == (0, 3) and len(fakes.calls) == calls
    bigger = run_eval(make_run(tmp_path, n=4))  # one more problem: only it runs
    assert (bigger.done, bigger.skipped) == (1, 3)
    assert len(read_rows(run.path)) == 4


def test_different_settings_are_a_different_run(fake_models, tmp_path):
    fake_models(doubling_script)
    a = make_run(tmp_path, method="scale")
    b = EvalRun(dataset=a.dataset, method=a.method, context=fake_context(threshold=0.7), out_dir=a.out_dir)
    assert a.path != b.path and a.settings()["threshold"] == 0.2 and b.settings()["threshold"] == 0.7


def test_changed_prompts_are_a_different_run(fake_models, tmp_path, monkeypatch):
    """Resuming after the prompts changed must not mix rows of the two prompt versions in one file."""
    fake_models(doubling_script)
    before = make_run(tmp_path, method="scale")
    version, path = before.settings()["prompts"], before.path
    monkeypatch.setattr(prompts, "SOLVE_DEEP", prompts.SOLVE_DEEP + " Be brief.")
    after = make_run(tmp_path, method="scale")
    assert after.settings()["prompts"] != version and after.path != path


def test_a_failing_attempt_is_not_written_and_runs_again(fake_models, tmp_path):
    fake_models(doubling_script)
    path = write_dataset(tmp_path / "tiny.jsonl", 3)
    with path.open("a") as fh:  # a problem the graph refuses (control character)
        fh.write(json.dumps({"id": "bad", "problem": "What is \u0001?", "answer": "1"}) + "\n")
    run = EvalRun(
        dataset=load_dataset(str(path)),
        method=get_method("cot"),
        context=fake_context(),
        out_dir=tmp_path / "out",
    )
    outcome = run_eval(run)
    assert outcome.done == 3 and [f[:2] for f in outcome.failed] == [("bad", 0)]
    assert "control character" in outcome.failed[0][2] and outcome.stopped is None
    assert run.pending() == [(run.dataset.problems[3], 0)]


def test_an_endpoint_failure_stops_the_run(fake_models, tmp_path):
    def script(body):
        if "What is 1 + 1" in user_text(body):
            return Reply(status=401)
        return doubling_script(body)

    fake_models(script)
    run = make_run(tmp_path, n=4, concurrency=1)
    outcome = run_eval(run)
    assert outcome.stopped and "401" in outcome.stopped
    assert [r["problem_id"] for r in read_rows(run.path)] == ["p0"]  # p2, p3 never started
    fake_models(doubling_script)
    assert run_eval(make_run(tmp_path, n=4)).done == 3


def test_a_rejected_request_is_an_error_row_and_the_run_goes_on(tmp_path):
    """An HTTP 400 (vLLM's context-length overflow) on one attempt is recorded on its row; the rest still run."""

    def script(body):
        if "What is 1 + 1" in user_text(body):
            return Reply(status=400)  # "This model's maximum context length is …"
        return doubling_script(body)

    dataset = load_dataset(str(write_dataset(tmp_path / "tiny.jsonl", 3)))
    with FakeOpenAIServer(script) as server:
        def job():
            return EvalRun(dataset=dataset, method=get_method("cot"), out_dir=tmp_path / "out",
                           context=fake_context(base_url=server.base_url, model="m"), samples=2, concurrency=1)

        outcome = run_eval(job())
        assert (outcome.done, outcome.errored, outcome.failed, outcome.stopped) == (6, 2, [], None)
        rows = {(r["problem_id"], r["sample"]): r for r in read_rows(job().path)}
        assert len(rows) == 6
        bad = rows[("p1", 0)]
        assert "HTTP 400" in bad["error"] and bad["correct"] is False and bad["answer"] is None
        assert bad["verdict"]["status"] == "error" and bad["tokens"]["completion"] == 0 and bad["units"] == []
        assert all(r["correct"] and "error" not in r for k, r in rows.items() if k[0] != "p1")
        requests = len(server.requests)
        assert run_eval(job()).done == 0 and len(server.requests) == requests  # recorded: not run again
        path = job().path
    (m,) = compute_all(read_rows(path))
    assert m.errors == 2 and m.acc == pytest.approx(2 / 3) and m.grade_status == {"ok": 4, "error": 2}
    assert m.tok == pytest.approx(sum(r["tokens"]["completion"] for r in rows.values()) / 4)  # ran attempts only


@pytest.mark.parametrize(
    ("reason", "retryable", "attempt_only"),
    [
        ("HTTP 400: This model's maximum context length is 40960 tokens", False, True),
        ("HTTP 413: payload too large", False, True),
        ("HTTP 422: unprocessable", False, True),
        ("HTTP 401: unauthorized", False, False),  # every request would fail: stop
        ("HTTP 404: model not found", False, False),
        ("HTTP 503: overloaded", True, False),  # after the retries: stop
        ("cannot connect (refused)", True, False),
        ("timed out (read)", True, False),
    ],
)
def test_which_endpoint_errors_concern_one_attempt_only(reason, retryable, attempt_only):
    exc = EndpointError("http://x/v1", reason, retryable=retryable)
    assert is_attempt_error(exc) is attempt_only and stops_run(exc) is not attempt_only
    assert not is_attempt_error(ValueError("HTTP 400")) and not stops_run(ValueError("x"))


def test_an_unreachable_endpoint_still_stops_the_run(tmp_path):
    with FakeOpenAIServer(doubling_script) as server:
        url = server.base_url
    run = EvalRun(dataset=load_dataset(str(write_dataset(tmp_path / "tiny.jsonl", 3))), method=get_method("cot"),
                  context=fake_context(base_url=url, model="m", request_timeout=5), out_dir=tmp_path / "out")
    outcome = run_eval(run)
    assert outcome.stopped and outcome.done == 0 and not read_rows(run.path)


def test_eval_profile_paper_defaults_to_8_samples(tmp_path):
    dataset = write_dataset(tmp_path / "tiny.jsonl", 2)
    with FakeOpenAIServer(doubling_script) as server:
        common = ["--dataset", str(dataset), "--method", "cot", "--limit", "1", "--base-url", server.base_url,
                  "--profile", "paper", "--quiet"]
        assert main(["eval", *common, "--out", str(tmp_path / "a")]) == 0
        assert main(["eval", *common, "--samples", "2", "--out", str(tmp_path / "b")]) == 0
        no_profile = [a for a in common if a not in ("--profile", "paper")]
        assert main(["eval", *no_profile, "--out", str(tmp_path / "c")]) == 0
        assert main(["sweep", *common, "--thresholds", "0.5", "--samples", "1", "--out", str(tmp_path / "d")]) == 0
    rows = list(read_dirs([tmp_path / "a"]))
    assert len(rows) == 8 and rows[0]["settings"]["samples"] == 8
    assert rows[0]["settings"]["system2_max_tokens"] == 32768  # the profile's budget
    assert len(list(read_dirs([tmp_path / "b"]))) == 2
    assert len(list(read_dirs([tmp_path / "c"]))) == 1  # no profile: 1 sample
    assert len(list(read_dirs([tmp_path / "d"]))) == 1


EVAL_SCRIPT = "import sys; from scale_graph.cli import main; sys.exit(main())"


def eval_command(dataset: Path, out: Path, base_url: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        EVAL_SCRIPT,
        "eval",
        "--dataset",
        str(dataset),
        "--method",
        "cot",
        "--samples",
        "2",
        "--concurrency",
        "2",
        "--out",
        str(out),
        "--base-url",
        base_url,
        "--model",
        "m",
        "--quiet",
    ]


def test_resume_after_a_crash_loses_and_duplicates_nothing(tmp_path):
    dataset = write_dataset(tmp_path / "tiny.jsonl", 6)
    out = tmp_path / "out"

    def slow(body):
        reply = doubling_script(body)
        reply.delay = 0.3
        return reply

    log = tmp_path / "first-run.log"
    with FakeOpenAIServer(slow) as server, log.open("wb") as err:
        proc = subprocess.Popen(
            eval_command(dataset, out, server.base_url),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "SCALE_BASE_URL": ""},
        )
        deadline = time.monotonic() + 120
        results = None
        while time.monotonic() < deadline and proc.poll() is None:
            files = list(out.glob("*.jsonl")) if out.exists() else []
            if files and len(read_rows(files[0])) >= 3:
                results = files[0]
                break
            time.sleep(0.05)
        assert results is not None, log.read_text() if proc.poll() is not None else "no rows in time"
        proc.send_signal(signal.SIGKILL)  # a crash: no clean-up at all
        proc.wait(10)
        before = read_rows(results)
        assert 3 <= len(before) < 12
        with results.open("a") as fh:  # and a row cut off in the middle of its write
            fh.write('{"run": "half a row", "problem_id": "p5", "sa')

        done = subprocess.run(
            eval_command(dataset, out, server.base_url),
            capture_output=True,
            timeout=300,
            env={**os.environ, "SCALE_BASE_URL": ""},
        )
        assert done.returncode == 0, done.stderr.decode()

    after = read_rows(results)
    keys = [(r["problem_id"], r["sample"]) for r in after]
    assert len(keys) == len(set(keys)) == 12
    assert after[: len(before)] == before  # earlier rows kept as they were
    assert all(r["correct"] for r in after)
    assert results.read_text().endswith("\n") and "half a row" not in results.read_text()


def test_eval_command_rejects_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "p", "answer": "1"}\n{"id": "b"}\n')
    assert main(["eval", "--dataset", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["eval", "--dataset", "nope", "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", "gsm8k_dev", "--samples", "0", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["eval", "--dataset", "gsm8k_dev", "--method", "best", "--out", str(tmp_path / "o")])


def test_sweep_needs_values(tmp_path, capsys):
    assert main(["sweep", "--dataset", "gsm8k_dev", "--out", str(tmp_path)]) == 2
    assert "--thresholds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--dataset", "gsm8k_dev", "--thresholds", "a,b", "--out", str(tmp_path)])


def test_sweep_runs_each_point_and_plots(tmp_path):
    out = tmp_path / "sweep"
    with FakeOpenAIServer(scale_script) as server:  # difficulties 0.1 and 0.9
        common = ["--dataset", "gsm8k_dev", "--limit", "2", "--out", str(out), "--base-url", server.base_url,
                  "--candidates", "1", "--quiet"]
        assert main(["sweep", "--thresholds", "0.0,0.5,1", *common]) == 0
        assert main(["sweep", "--deep-max-tokens", "64,128", "--threshold", "0.5", *common]) == 0
    metrics = {(m.settings["threshold"], m.settings["system2_max_tokens"]): m
               for m in compute_all(read_dirs([out]))}
    assert set(metrics) == {(0.0, 2048), (0.5, 2048), (1.0, 2048), (0.5, 64), (0.5, 128)}
    assert [metrics[(t, 2048)].hard for t in (0.0, 0.5, 1.0)] == [1.0, 0.5, 0.0]
    assert all(m.problems == 2 for m in metrics.values())
    for plot in ("tau_sweep.png", "budget_sweep.png", "accuracy_vs_tokens.png", "report.md"):
        assert (out / plot).stat().st_size > 0

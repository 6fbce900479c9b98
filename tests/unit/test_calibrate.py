"""``scale calibrate``: both modes on an eval run's sub-problems with the run's Eq. 5 context, judged, resumable,
reported per d bucket with the AUROC of d; the statistics on known data; the command against the fake server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scale_graph import prompts
from scale_graph.cli import main
from scale_graph.eval.calibrate import (
    CALIBRATION_FILE,
    OUT_SUBDIR,
    PLOT_FILE,
    REPORT_FILE,
    Calibration,
    auroc,
    bucket_of,
    items_of,
    markdown,
    run_calibration,
    summarize,
    token_costs,
    write_report,
)
from scale_graph.eval.datasets import load_dataset
from scale_graph.eval.methods import get_method
from scale_graph.eval.results import read_dirs, read_rows
from scale_graph.eval.runner import EvalRun, run_eval
from scale_graph.grading import GradingPool
from scale_graph.testing import FakeOpenAIServer, Reply, current_subproblem, scale_script, stage_of
from tests.conftest import fake_context, make_script

SUBS = ["Find A.", "Find B.", "Give the final answer."]
DIFFICULTY = {SUBS[0]: '{"difficulty": 0.1}', SUBS[1]: '{"difficulty": 0.8}', SUBS[2]: '{"difficulty": 0.6}'}
"""A is easy, B hard; the last sub-problem (replaced by the question, d forced to 0.9) was assessed 0.6."""


def answers(sub: str, body: dict) -> str:
    """System 1 and System 2 agree on A (10), disagree on B (21 vs 20) and on the final question (31 vs 30)."""
    number = {SUBS[0]: 10, SUBS[1]: 20}.get(sub, 30)
    if stage_of(body) == "system1" and number != 10:
        number += 1
    return f"Work for {sub} \\boxed{{{number}}}"


SCRIPT = make_script(SUBS, DIFFICULTY, solution=answers)


def write_dataset(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)})
                            + "\n" for i in range(n)))
    return path


def eval_results(tmp_path: Path, n: int = 2, **context) -> Path:
    """A results directory of ``scale eval --method scale`` (τ = 0.2) on n problems."""
    dataset = load_dataset(str(write_dataset(tmp_path / "tiny.jsonl", n)))
    out = tmp_path / "results"
    run_eval(EvalRun(dataset=dataset, method=get_method("scale"), context=fake_context(**context), out_dir=out))
    return out


@pytest.fixture(scope="module")
def pool():
    with GradingPool(size=1) as pool:
        yield pool


def calibrate(results: Path, **kw) -> Calibration:
    return Calibration(results_dir=results, out_dir=results / OUT_SUBDIR, context=fake_context(), **kw)


def test_each_subproblem_is_answered_by_the_other_mode_with_the_runs_context(fake_models, tmp_path, pool):
    fakes = fake_models(SCRIPT)
    results = eval_results(tmp_path)
    (row, _) = sorted(read_dirs([results]), key=lambda r: r["problem_id"])
    assert [u["mode"] for u in row["units"]] == ["system1", "system2", "system2"]
    fakes.calls.clear()

    outcome = run_calibration(calibrate(results, concurrency=2), pool=pool)
    assert (outcome.done, outcome.skipped, outcome.failed, outcome.stopped) == (6, 0, [], None)
    # the mode the run used is reused from its row: one new call per sub-problem, in the other mode
    assert sorted(stage_of(c) for c in fakes.calls) == ["system1"] * 4 + ["system2"] * 2
    rows = {(r["problem_id"], r["index"]): r for r in read_rows(results / OUT_SUBDIR / CALIBRATION_FILE)}
    a, b, final = rows[("p0", 0)], rows[("p0", 1)], rows[("p0", 2)]
    assert (a["system1"]["reused"], a["system2"]["reused"]) == (True, False)
    assert (b["system1"]["reused"], b["system2"]["reused"]) == (False, True)
    assert (a["system1"]["answer"], a["system2"]["answer"], a["agree"]) == ("10", "10", True)
    assert (b["system1"]["answer"], b["system2"]["answer"], b["agree"]) == ("21", "20", False)
    assert (final["agree"], final["forced"], final["difficulty"], final["d"]) == (False, True, 0.9, 0.6)
    assert (a["d"], b["d"], a["route_mode"], a["model"], a["assess"]) == (0.1, 0.8, "system1", "fake-model", "upfront")

    # the Eq. 5 context of each new call is the run's own: P, then every earlier sub-problem with its solution as
    # the run recorded it, then the sub-problem in the asked mode's instruction
    for call in fakes.calls:
        sub = current_subproblem(call)
        index = SUBS.index(sub) if sub in SUBS else 2
        problem = next(r for r in read_dirs([results]) if r["problem"] in call["messages"][1]["content"])
        assert [m["role"] for m in call["messages"]] == ["system"] + ["user", "assistant"] * index + ["user"]
        assert [m["content"] for m in call["messages"] if m["role"] == "assistant"] == [
            u["solution"] for u in problem["units"][:index]]
        instruction = prompts.SOLVE_FAST if stage_of(call) == "system1" else prompts.SOLVE_DEEP
        assert call["messages"][-1]["content"].endswith(instruction)


def test_an_interrupted_calibration_resumes_and_limit_counts_subproblems(fake_models, tmp_path, pool):
    fakes = fake_models(SCRIPT)
    results = eval_results(tmp_path)
    fakes.calls.clear()
    assert run_calibration(calibrate(results, limit=2), pool=pool).done == 2
    assert len(fakes.calls) == 2
    path = results / OUT_SUBDIR / CALIBRATION_FILE
    with path.open("a") as fh:  # a line cut short by a crash: dropped, and that item asked again
        fh.write('{"run": "cut')
    again = run_calibration(calibrate(results), pool=pool)
    assert (again.done, again.skipped) == (4, 2) and len(fakes.calls) == 6
    assert run_calibration(calibrate(results), pool=pool).done == 0 and len(fakes.calls) == 6
    rows = read_rows(path)
    assert len(rows) == 6 and len({(r["problem_id"], r["index"]) for r in rows}) == 6


def test_another_model_or_fresh_asks_both_modes(fake_models, tmp_path, pool):
    fakes = fake_models(SCRIPT)
    results = eval_results(tmp_path, n=1)
    fakes.calls.clear()
    run_calibration(calibrate(results, fresh=True), pool=pool)
    assert sorted(stage_of(c) for c in fakes.calls) == ["system1"] * 3 + ["system2"] * 3
    fakes.calls.clear()
    other = Calibration(results_dir=results, out_dir=tmp_path / "other", context=fake_context(model="other-model"))
    run_calibration(other, pool=pool)
    assert len(fakes.calls) == 6 and {c["model"] for c in fakes.calls} == {"other-model"}
    assert all(not r["system1"]["reused"] and not r["system2"]["reused"] for r in read_rows(other.path))


def test_the_runs_budgets_and_sampling_are_used_unless_given(fake_models, tmp_path, pool):
    fakes = fake_models(SCRIPT)
    results = eval_results(tmp_path, n=1, system1_max_tokens=77, system2_max_tokens=333, temperature=0.3)
    fakes.calls.clear()
    run_calibration(calibrate(results, fresh=True), pool=pool)
    budgets = {(stage_of(c), c["max_completion_tokens"], c["temperature"]) for c in fakes.calls}
    assert budgets == {("system1", 77, 0.3), ("system2", 333, 0.3)}
    fakes.calls.clear()
    given = Calibration(results_dir=results, out_dir=tmp_path / "given", fresh=True,
                        context=fake_context(system2_max_tokens=999), explicit=frozenset({"system2_max_tokens"}))
    run_calibration(given, pool=pool)
    assert {c["max_completion_tokens"] for c in fakes.calls if stage_of(c) == "system2"} == {999}


def test_an_endpoint_failure_stops_the_calibration_and_keeps_what_finished(fake_models, tmp_path, pool):
    fake_models(SCRIPT)
    results = eval_results(tmp_path)

    def refusing(body):
        return Reply(status=401) if current_subproblem(body) == SUBS[1] else SCRIPT(body)

    fake_models(refusing)
    outcome = run_calibration(calibrate(results, concurrency=1), pool=pool)
    assert outcome.stopped and "401" in outcome.stopped and outcome.done == 1
    fake_models(SCRIPT)
    assert run_calibration(calibrate(results), pool=pool).done == 5


def test_only_scale_attempts_that_ran_are_items(tmp_path):
    scale = {"run": "r", "unit": "sub-problem", "subproblems": ["a", "b"], "problem_id": "p", "sample": 0,
             "units": [{"index": 0}, {"index": 1}]}
    rows = [scale, {**scale, "unit": "sample"}, {**scale, "error": "HTTP 400", "units": []},
            {**scale, "units": []}]
    assert [(i.row is scale, i.position) for i in items_of(rows)] == [(True, 0), (True, 1)]


def test_bad_arguments_are_usage_errors(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(ValueError, match="must not be the results directory"):
        Calibration(results_dir=tmp_path / "results", out_dir=tmp_path / "results", context=fake_context())
    with pytest.raises(ValueError, match="not a directory"):
        Calibration(results_dir=tmp_path / "none", out_dir=tmp_path / "o", context=fake_context())
    assert main(["calibrate", str(tmp_path / "none"), "--base-url", "http://127.0.0.1:9/v1"]) == 2
    with pytest.raises(SystemExit):
        main(["calibrate", str(tmp_path / "results"), "--limit", "0"])


# --- the statistics --------------------------------------------------------------------------------------------------


def test_auroc_on_known_data():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count half
    assert auroc([0.0, 1.0, 1.0, 0.0], [False, True, False, False]) == pytest.approx(5 / 6)
    assert auroc([0.3, 0.4], [True, True]) is None  # one class: undefined


def test_buckets_are_closed_on_the_right_like_eq4():
    assert [bucket_of(d, 5) for d in (0.0, 0.2, 0.2000001, 0.4, 0.5, 0.8, 0.81, 1.0)] == [0, 0, 1, 1, 2, 3, 4, 4]


def calibration_row(d, agree, run="r1", s1=10, s2=100, **extra):
    return {"run": run, "model": "m", "method": "scale", "assess": "upfront", "problem_id": "p", "sample": 0,
            "index": 0, "d": d, "agree": agree, "system1": {"completion_tokens": s1},
            "system2": {"completion_tokens": s2}, **extra}


def test_summary_per_bucket_with_auroc_and_costs():
    rows = [calibration_row(0.0, True), calibration_row(0.0, True), calibration_row(0.1, False),
            calibration_row(1.0, False, s1=20, s2=200), calibration_row(0.9, True), calibration_row(None, False),
            calibration_row(0.5, None), calibration_row(0.3, True, run="r2")]
    r1, r2 = summarize(rows)
    assert (r1.run, r1.items, r1.judged, r1.disagreements, r2.judged) == ("r1", 7, 5, 2, 1)
    assert [(b.n, b.disagreements) for b in r1.buckets] == [(3, 1), (0, 0), (0, 0), (0, 0), (2, 1)]
    assert r1.buckets[0].rate == pytest.approx(1 / 3) and r1.buckets[1].rate is None
    assert r1.auroc == pytest.approx(5 / 6)  # positives 0.1, 1.0 vs negatives 0, 0, 0.9: 5 of 6 pairs
    assert r1.extreme_share == pytest.approx(3 / 5)
    assert r1.system1_tokens == pytest.approx(80 / 7) and r1.buckets[4].system2_tokens == pytest.approx(150)
    assert r2.auroc is None
    text = markdown([r1, r2])
    assert "| r1 | upfront | m | 7 | 5 | 40 | 0.833 | 60 |" in text and "(0.8, 1] " in text
    assert "--system1-token-cost 11 --system2-token-cost 114" in text


def test_report_files_and_token_costs(tmp_path):
    rows = [calibration_row(0.0, True), calibration_row(1.0, False, s1=30, s2=300)]
    out = tmp_path / "cal"
    written = write_report(rows, out, buckets=4)
    assert [p.name for p in written] == [REPORT_FILE, PLOT_FILE]
    assert (out / PLOT_FILE).read_bytes().startswith(b"\x89PNG")
    assert "[0, 0.25]" in (out / REPORT_FILE).read_text()
    (out / CALIBRATION_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = {"system1_token_cost": 20.0, "system2_token_cost": 200.0}
    assert token_costs(out) == token_costs(out / CALIBRATION_FILE) == expected
    results = tmp_path / "results"
    (results / OUT_SUBDIR).mkdir(parents=True)
    (results / OUT_SUBDIR / CALIBRATION_FILE).write_text((out / CALIBRATION_FILE).read_text())
    assert token_costs(results) == expected
    with pytest.raises(ValueError, match=r"no calibration\.jsonl"):
        token_costs(tmp_path / "nowhere")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no calibration rows"):
        token_costs(tmp_path / "empty.jsonl")
    assert write_report([], tmp_path / "none") == [tmp_path / "none" / REPORT_FILE]  # nothing judged: no plot


# --- the command, against the fake server ----------------------------------------------------------------------------


def test_calibrate_command_end_to_end(tmp_path, capsys):
    """``scale eval`` then ``scale calibrate --limit 2`` (the integration test's commands), then a resume."""
    data = write_dataset(tmp_path / "tiny.jsonl", 2)
    results = tmp_path / "results"
    with FakeOpenAIServer(SCRIPT) as server:
        common = ["--base-url", server.base_url, "--quiet"]
        assert main(["eval", "--dataset", str(data), "--method", "scale", "--candidates", "1", "--limit", "2",
                     "--out", str(results), *common]) == 0
        assert main(["calibrate", str(results), "--limit", "2", *common]) == 0
        out = results / OUT_SUBDIR
        assert len(read_rows(out / CALIBRATION_FILE)) == 2
        assert {p.name for p in out.iterdir()} >= {CALIBRATION_FILE, REPORT_FILE, PLOT_FILE}
        requests = len(server.requests)
        assert main(["calibrate", str(results), "--limit", "2", *common]) == 0
        assert len(server.requests) == requests  # nothing left to ask
        err = capsys.readouterr().err
        assert "0 sub-problems done now, 2 already there" in err
        assert main(["report", str(results)]) == 0  # the calibration rows do not disturb the results directory
        assert main(["calibrate", str(results), "--out", str(results), *common]) == 2


def test_the_issue16_commands_on_the_fake_model(tmp_path):
    """The integration test's command lines (tests/integration/test_issue16_commands.py), on the fake server."""
    from tests.integration.test_issue16_commands import check_outputs, issue16_commands

    with FakeOpenAIServer(scale_script) as server:
        for argv in issue16_commands(tmp_path, ["--base-url", server.base_url]):
            assert main(argv) == 0, argv
    check_outputs(tmp_path)


def test_a_forced_final_question_with_no_score_of_its_own_is_not_asked(fake_models, tmp_path, pool):
    fakes = fake_models(SCRIPT)
    results = eval_results(tmp_path, n=1)
    for path in results.glob("*.jsonl"):  # as a run from before units kept the assessor's own score
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            for unit in row["units"]:
                unit.pop("assessed_difficulty", None)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fakes.calls.clear()
    outcome = run_calibration(calibrate(results), pool=pool)
    assert outcome.done == 2  # A and B; the final question has no d to judge
    assert sorted(stage_of(c) for c in fakes.calls) == ["system1", "system2"]

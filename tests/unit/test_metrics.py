"""The paper's metrics, the report and the traces on a small hand-made results file (tests/fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scale_graph.cli import main
from scale_graph.eval import traces as traces_module
from scale_graph.eval.metrics import compute_all
from scale_graph.eval.report import markdown, write_report
from scale_graph.eval.results import read_rows
from scale_graph.eval.traces import write_traces

FIXTURE = Path(__file__).parent / "fixtures" / "results_small.jsonl"


@pytest.fixture
def metrics():
    return {m.method: m for m in compute_all(read_rows(FIXTURE))}


def test_scale_metrics(metrics):
    m = metrics["scale"]
    assert (m.problems, m.attempts) == (2, 4)
    assert m.acc == pytest.approx(0.5)  # p1: 1 of 2 samples, p2: 1 of 2 (the timeout counts wrong)
    assert m.tok == pytest.approx((100 + 200 + 150 + 150) / 4)
    assert m.tok_by_stage == pytest.approx({"assess": 12.5, "decompose": 50.0, "solve": 87.5})
    assert m.tpi == pytest.approx((50 + 120 + 90 + 90) / 7)  # solve tokens per sub-problem
    assert m.solve_tok == pytest.approx((50 + 120 + 90 + 90) / 4) == pytest.approx(m.tpi * m.units)
    assert m.tok - m.solve_tok == pytest.approx(m.tok_by_mode["control"])  # decompose + assess
    assert m.hard == pytest.approx(2 / 7)
    assert m.units == pytest.approx(7 / 4)
    assert m.seconds == pytest.approx(3.0)
    assert m.calls == pytest.approx(4.75)
    assert m.grade_status == {"ok": 3, "timeout": 1}
    assert m.label == "scale τ=0.2"


def test_cot_and_inftythink_metrics(metrics):
    cot = metrics["cot"]
    assert (cot.acc, cot.tok, cot.tpi, cot.hard) == (0.5, 200.0, 200.0, 1.0)
    infty = metrics["inftythink"]
    assert infty.tpi == pytest.approx((100 + 20 + 60) / 2)  # per round, summaries included
    assert infty.tok_by_mode == pytest.approx({"system1": 0, "system2": 160, "control": 20})
    assert infty.solve_tok == pytest.approx(180)  # the rounds and their summaries are the method's own work
    assert cot.solve_tok == cot.tok and cot.errors == 0
    assert infty.label == "inftythink 4×1024"


def test_markdown_report_has_one_row_per_run(metrics):
    text = markdown(list(metrics.values()))
    assert "| dataset | method | n | Acc % | Tok | solve Tok | Tpi | Hard % | errors |" in text
    assert "| gsm8k_dev | scale τ=0.2 | 2×2 | 50.0 | 150 | 88 | 50 | 29 | 0 |" in text
    assert "| gsm8k_dev | cot | 2×1 | 50.0 | 200 | 200 | 200 | 100 | 0 |" in text
    assert "gsm8k_dev / scale τ=0.2: grading ok 3, timeout 1" in text


def test_report_writes_markdown_and_plots(metrics, tmp_path):
    written = write_report(list(metrics.values()), tmp_path)
    names = {p.name for p in written}
    assert names == {
        "report.md",
        "accuracy_vs_tokens.png",
        "tau_sweep.png",
    }  # one budget only: no budget plot
    for path in written:
        assert path.stat().st_size > 0
    assert (tmp_path / "accuracy_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command(tmp_path, capsys):
    shutil.copy(FIXTURE, tmp_path / "results.jsonl")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "scale τ=0.2" in out and "inftythink 4×1024" in out
    assert (tmp_path / "report.md").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2


def test_traces_keep_only_verified_correct_scale_attempts(tmp_path):
    out = tmp_path / "traces.jsonl"
    kept, dropped = write_traces(read_rows(FIXTURE), out, correct_only=True)
    assert kept == 2
    assert dropped == {"not verified correct": 2, "not a SCALE trace": 3}
    examples = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["meta"]["problem_id"] for e in examples] == ["p1", "p2"]
    roles = [m["role"] for m in examples[0]["messages"]]
    assert roles == ["system", "user", "assistant"]
    assistant = examples[0]["messages"][2]["content"]
    assert assistant.startswith("Sub-problem 1: sub-problem 0\nstep 0 work")
    assert "Sub-problem 2: sub-problem 1" in assistant and assistant.endswith("Final answer: \\boxed{3}")
    kept_all, _ = write_traces(read_rows(FIXTURE), out, correct_only=False)
    assert kept_all == 4


def test_traces_command_prints_counts(tmp_path, capsys):
    assert main(["traces", str(FIXTURE), "--correct-only", "--out", str(tmp_path / "t.jsonl")]) == 0
    assert "kept 2 examples" in capsys.readouterr().err


def error_row(like: dict, problem_id: str) -> dict:
    """An attempt the endpoint rejected, shaped as the runner writes it."""
    return {**like, "problem_id": problem_id, "sample": 0, "answer": None, "correct": False, "units": [],
            "error": "EndpointError: model endpoint http://x/v1: HTTP 400: maximum context length",
            "verdict": {"correct": False, "extracted": None, "status": "error", "seconds": 0.0},
            "tokens": {"completion": 0, "prompt": 0, "by_stage": {}, "by_mode": {}, "calls": 0}}


def test_rejected_attempts_count_wrong_and_stay_out_of_the_token_averages():
    rows = [r for r in read_rows(FIXTURE) if r["method"] == "cot"]
    before = compute_all(rows)[0]
    (m,) = compute_all([*rows, error_row(rows[0], "p9")])
    assert (m.problems, m.attempts, m.errors) == (3, 3, 1)
    assert m.acc == pytest.approx(before.acc * 2 / 3)
    assert (m.tok, m.solve_tok, m.tpi, m.units) == (before.tok, before.solve_tok, before.tpi, before.units)
    text = markdown([m])
    assert "| gsm8k_dev | cot | 3×1 | 33.3 | 200 | 200 | 200 | 100 | 1 |" in text
    assert "(1 of the errors: attempts the endpoint rejected)" in text
    (all_bad,) = compute_all([error_row(rows[0], "p9")])
    assert (all_bad.acc, all_bad.tok, all_bad.tpi, all_bad.errors) == (0.0, 0.0, 0.0, 1)


def test_report_files_are_replaced_whole(metrics, tmp_path):
    (tmp_path / "report.md").write_text("old")
    write_report(list(metrics.values()), tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("## Results")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def reasoning_rows() -> list[dict]:
    """The fixture's correct SCALE attempts, the second step of each with reasoning text (System 2 thinking)."""
    rows = [r for r in read_rows(FIXTURE) if r["method"] == "scale" and r["correct"]]
    for row in rows:
        row["units"][1]["reasoning"] = f"Let me think about {row['problem_id']}.\n"
    return rows


def assistant_of(example: dict) -> dict:
    return example["messages"][2]


@pytest.mark.parametrize("mode", ["inline", "field", "none"])
def test_traces_reasoning_modes(tmp_path, mode):
    out = tmp_path / "t.jsonl"
    assert write_traces(reasoning_rows(), out, correct_only=True, reasoning=mode)[0] == 2
    turn = assistant_of(json.loads(out.read_text().splitlines()[0]))
    content = turn["content"]
    assert content.startswith("Sub-problem 1: sub-problem 0\nstep 0 work")  # no reasoning: no think block
    if mode == "inline":
        assert "Sub-problem 2: sub-problem 1\n<think>\nLet me think about p1.\n</think>\nstep 1 work" in content
        assert "reasoning_content" not in turn
    elif mode == "field":
        assert "<think>" not in content and "Let me think" not in content
        assert turn["reasoning_content"] == "Sub-problem 2: sub-problem 1\nLet me think about p1."
    else:
        assert "<think>" not in content and "reasoning_content" not in turn and "Let me think" not in content
    assert content.endswith("Final answer: \\boxed{3}")


def test_traces_default_keeps_the_reasoning_inline(tmp_path):
    out = tmp_path / "t.jsonl"
    write_traces(reasoning_rows(), out, correct_only=False)
    first = json.loads(out.read_text().splitlines()[0])
    assert "<think>\nLet me think about p1.\n</think>" in assistant_of(first)["content"]


def test_traces_command_reasoning_flag(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reasoning_rows()))
    out = tmp_path / "t.jsonl"
    assert main(["traces", str(tmp_path / "in"), "--reasoning", "field", "--out", str(out)]) == 0
    assert "reasoning_content" in out.read_text()
    with pytest.raises(SystemExit):
        main(["traces", str(tmp_path / "in"), "--reasoning", "hidden", "--out", str(out)])


def stderr_of(capsys) -> str:
    """What the command printed on stderr, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def test_traces_refuse_to_write_into_the_results(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(FIXTURE, results / "run.jsonl")
    original = (results / "run.jsonl").read_bytes()
    for out, why in [
        (results / "traces.jsonl", "inside the results directory"),
        (results / "sub" / "t.jsonl", "inside the results directory"),
        (results / "run.jsonl", "inside the results directory"),
    ]:
        assert main(["traces", str(results), "--out", str(out)]) == 2
        assert why in stderr_of(capsys)
    assert main(["traces", str(results / "run.jsonl"), "--out", str(results / "run.jsonl")]) == 2
    assert "would be overwritten" in stderr_of(capsys)
    assert main(["traces", str(results / "run.jsonl"), "--out", str(results / "t.jsonl")]) == 2
    assert "beside the results file" in stderr_of(capsys)
    assert main(["traces", str(results), "--out", str(tmp_path)]) == 2
    assert "is a directory" in stderr_of(capsys)
    assert (results / "run.jsonl").read_bytes() == original and sorted(p.name for p in results.iterdir()) == [
        "run.jsonl"]
    assert main(["traces", str(results), "--out", str(tmp_path / "traces.jsonl")]) == 0
    assert main(["report", str(results)]) == 0  # the results still read as results


def test_traces_file_is_replaced_whole(tmp_path, monkeypatch):
    out = tmp_path / "t.jsonl"
    out.write_text("previous traces\n")
    calls = []

    def failing_example(row, reasoning):
        calls.append(row)
        if len(calls) > 1:
            raise RuntimeError("disk full")
        return {"messages": []}

    monkeypatch.setattr(traces_module, "example", failing_example)
    with pytest.raises(RuntimeError):
        write_traces(read_rows(FIXTURE), out, correct_only=False)
    assert out.read_text() == "previous traces\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]

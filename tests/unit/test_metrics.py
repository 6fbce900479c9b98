"""The paper's metrics, the report and the traces on a small hand-made results file (tests/fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scale_graph.cli import main
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
    assert infty.label == "inftythink 4×1024"


def test_markdown_report_has_one_row_per_run(metrics):
    text = markdown(list(metrics.values()))
    assert "| gsm8k_dev | scale τ=0.2 | 2×2 | 50.0 | 150 | 50 | 29 |" in text
    assert "| gsm8k_dev | cot | 2×1 | 50.0 | 200 | 200 | 100 |" in text
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

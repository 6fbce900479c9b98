"""``scale reproduce``: Table 1's grid end to end on the fake server, resumption, the paper's numbers, usage errors."""

from __future__ import annotations

import re

import pytest

from scale_graph.cli import main
from scale_graph.eval.paper import fmt_paper, table1
from scale_graph.eval.reproduce import DATASETS, METHODS, PAPER_NAMES
from scale_graph.eval.results import read_rows
from scale_graph.testing import FakeOpenAIServer, FakeVLLMServer, Reply, scale_script, stage_of


def script(body):
    """SCALE's stages as scale_script; every baseline call (CoT, vote, InftyThink round/summary) answers at once."""
    if stage_of(body) == "other":
        return Reply(content="Reasoning done. \\boxed{7}", reasoning="thinking it over")
    return scale_script(body)


def table_cells(text: str) -> dict[tuple[str, str], list[str]]:
    """The per-cell table of table.md: (data set, method) → the row's cells."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and cells[0] in DATASETS:
            rows[(cells[0], cells[1])] = cells
    return rows


@pytest.fixture
def no_env_endpoint(monkeypatch):
    monkeypatch.delenv("SCALE_BASE_URL", raising=False)
    monkeypatch.delenv("SCALE_MODEL", raising=False)


def test_reproduce_smoke_run_end_to_end_and_resumable(tmp_path, capsys, no_env_endpoint):
    out = tmp_path / "repro"
    with FakeOpenAIServer(script) as server:
        argv = ["reproduce", "--base-url", server.base_url, "--limit", "1", "--samples", "1", "--out", str(out),
                "--quiet"]
        assert main(argv) == 0
        first = capsys.readouterr()
        requests = len(server.requests)
        assert requests > 0
        assert main(argv) == 0  # again: every attempt is already in its results file
        second = capsys.readouterr()
        assert len(server.requests) == requests
    assert "[12/12] amc23 × scale: 1 attempt, 1 already done" in " ".join(second.err.split())
    text = (out / "table.md").read_text()
    assert first.out == text == second.out  # printed as written
    assert "Served model: `fake-model`: not one of the paper's models" in text and "**Qwen3-32B**" in text
    cells = table_cells(text)
    assert set(cells) == {(d, PAPER_NAMES[m]) for d in DATASETS for m in METHODS}
    paper = table1().models["Qwen3-32B"]
    for (dataset, name), row in cells.items():
        method = next(m for m, n in PAPER_NAMES.items() if n == name)
        published = paper.cell(dataset, method)
        assert row[2] == "1×1" and "not run" not in row
        assert row[3] == fmt_paper(published["acc"], percent=True) and row[5] == fmt_paper(published["tok"])
        assert re.fullmatch(r"\d+\.\d\d", row[4]) and re.fullmatch(r"[\d,]+", row[6])  # ours: Acc, Tok
        assert row[8] == fmt_paper(published["tpi"]) and row[10] == fmt_paper(published["hard"], percent=True)
    assert cells[("aime24", "SCALE")][3:6:2] == ["82.92", "25,581"] and cells[("aime24", "SCALE")][10] == "75.61"
    assert cells[("aime24", "Majority-Voting")][8] == "/" and cells[("amc23", "SCALE")][10] == "—"
    assert "smoke run" in text
    for name in ("report.md", "accuracy_vs_tokens.png", "paper_vs_ours.png"):
        assert (out / name).stat().st_size > 0
    assert len(list(out.glob("*.jsonl"))) == 12


def test_reproduce_subset_and_model_match(tmp_path, capsys, no_env_endpoint):
    out = tmp_path / "repro"
    with FakeOpenAIServer(script, model="Qwen/QwQ-32B") as server:
        assert main(["reproduce", "--base-url", server.base_url, "--datasets", "amc23", "--methods", "cot,scale",
                     "--limit", "1", "--samples", "2", "--out", str(out), "--quiet"]) == 0
    text = (out / "table.md").read_text()
    assert "Served model: `Qwen/QwQ-32B`: compared with the paper's **QwQ** rows (matched by name)" in text
    cells = table_cells(text)
    assert set(cells) == {("amc23", "CoT"), ("amc23", "SCALE")}
    assert cells[("amc23", "CoT")][2] == "1×2" and cells[("amc23", "SCALE")][3] == "96.25"
    assert "| CoT | 78.40 |" in text  # the paper's Avg. Acc for QwQ CoT
    capsys.readouterr()


@pytest.mark.parametrize(
    ("served", "paper_model", "matched"),
    [
        ("Qwen/Qwen3-32B", "Qwen3-32B", True),
        ("qwen3-32b-awq", "Qwen3-32B", True),
        ("Qwen/QwQ-32B", "QwQ", True),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "Distill-Llama-70B", True),
        ("DeepSeek-R1-Distill-Qwen-32B", "Distill-Qwen-32B", True),
        ("Qwen/Qwen3-8B", "Qwen3-32B", False),
        (None, "Qwen3-32B", False),
    ],
)
def test_paper_model_for_a_served_name(served, paper_model, matched):
    model, ok = table1().for_model(served)
    assert (model.name, ok) == (paper_model, matched)


def test_paper_table_is_complete_and_says_where_it_comes_from():
    table = table1()
    assert "Table 1" in table.source and "2512.00466" in table.source and "Table 2" in table.source
    assert set(table.models) == {"Qwen3-32B", "QwQ", "Distill-Llama-70B", "Distill-Qwen-32B"}
    for model in table.models.values():
        for method in METHODS:
            assert set(model.avg_acc) == set(METHODS)
            for dataset in DATASETS:
                assert set(model.cell(dataset, method)) == {"acc", "tpi", "tok", "hard"}
    qwen = table.models["Qwen3-32B"]
    assert qwen.cell("aime25", "cot") == {"acc": 57.5, "tpi": 6839, "tok": 6839, "hard": None}
    assert qwen.cell("aime25", "scale")["hard"] == 75.78 and qwen.cell("amc23", "majority")["tpi"] == "/"
    assert table.models["Distill-Qwen-32B"].cell("aime25", "inftythink")["tok"] == 35187


def test_reproduce_usage_errors(tmp_path, capsys, no_env_endpoint):
    assert main(["reproduce", "--out", str(tmp_path / "o")]) == 2
    assert "needs an OpenAI-compatible endpoint" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--base-url", "http://127.0.0.1:9/v1", "--datasets", "aime24,gsm8k"])
    assert exc.value.code == 2 and "unknown data set 'gsm8k'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--base-url", "http://127.0.0.1:9/v1", "--methods", "best"])
    with pytest.raises(SystemExit):
        main(["reproduce", "--base-url", "http://127.0.0.1:9/v1", "--limit", "0"])


def test_reproduce_unreachable_endpoint_fails_cleanly(tmp_path, capsys, no_env_endpoint):
    with FakeOpenAIServer(script) as server:
        url = server.base_url
    assert main(["reproduce", "--base-url", url, "--limit", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "error:" in capsys.readouterr().err and not (tmp_path / "o" / "table.md").exists()


def test_reproduce_against_a_vllm_like_server(tmp_path, capsys, no_env_endpoint):
    """The same smoke run against the vLLM fake (Qwen3-32B, reasoning parser, max_model_len): rows keep the thinking,
    the table compares with the paper's Qwen3-32B rows by name."""
    out = tmp_path / "repro"
    with FakeVLLMServer(script) as server:
        argv = ["reproduce", "--base-url", server.base_url, "--limit", "1", "--samples", "1", "--datasets", "aime24",
                "--out", str(out), "--quiet"]
        assert main(argv) == 0, capsys.readouterr().err
        requests = len(server.requests)
        assert main(argv) == 0 and len(server.requests) == requests
    text = (out / "table.md").read_text()
    assert "Served model: `Qwen/Qwen3-32B`: compared with the paper's **Qwen3-32B** rows (matched by name)" in text
    cells = table_cells(text)
    assert set(cells) == {("aime24", PAPER_NAMES[m]) for m in METHODS}
    assert all(row[2] == "1×1" and row[12] == "0" for row in cells.values())  # ran, nothing rejected
    scale_rows = [r for p in out.glob("aime24__scale__*.jsonl") for r in read_rows(p)]
    assert any(u["reasoning"] for r in scale_rows for u in r["units"] if u["mode"] == "system2")

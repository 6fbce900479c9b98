"""Per-problem budgets stop the run cleanly before the next sub-problem, with a status and the partial steps."""

from __future__ import annotations

from scale_graph import solve
from scale_graph.cli import main
from scale_graph.nodes import _runtime
from scale_graph.nodes.finalize import BUDGET_EXHAUSTED
from tests.conftest import SUBPROBLEMS, fake_context, make_script

LONG = " ".join(["word"] * 40) + " \\boxed{1}"


def test_no_budget_means_completed(fake_models) -> None:
    fake_models(make_script())
    result = solve("P?", context=fake_context())
    assert result.status == "completed" and result.stop_reason is None and len(result.steps) == 3


def test_token_budget_stops_before_the_next_subproblem(fake_models) -> None:
    fakes = fake_models(make_script(solution=lambda sub, body: LONG))
    # decomposition (2 × ~9) + 3 assessments (~2 each) ≈ 25 tokens, then each solve spends 41
    result = solve("P?", context=fake_context(max_tokens_per_problem=60))
    assert result.status == "budget_exhausted"
    assert result.stop_reason.startswith("token budget:") and "of 60 completion tokens" in result.stop_reason
    assert len(result.steps) == 1  # the first solve crossed the budget; the second was never started
    assert result.answer is None and result.answer_fallback == BUDGET_EXHAUSTED
    assert [s for s in fakes.stages() if s.startswith("system")] == ["system2"]


def test_time_budget_uses_the_run_start(fake_models, monkeypatch) -> None:
    fake_models(make_script())
    times = iter([1000.0, 1000.5, 1002.0, 1010.0])  # run start, then the clock before sub-problem 1, 2, 3
    monkeypatch.setattr(_runtime, "now", lambda: next(times))
    result = solve("P?", context=fake_context(max_seconds_per_problem=5))
    assert result.status == "budget_exhausted"
    assert len(result.steps) == 2
    assert result.stop_reason == "time budget: 10.0 of 5 seconds used"


def test_budget_reached_after_the_last_step_still_completes(fake_models) -> None:
    fake_models(make_script(subproblems=[SUBPROBLEMS[-1]], solution=lambda sub, body: LONG))
    result = solve("P?", context=fake_context(max_tokens_per_problem=30))
    assert result.status == "completed" and result.answer == "1"


def test_cli_exit_code_3_and_partial_steps(monkeypatch, capsys, fake_models) -> None:
    fake_models(make_script(solution=lambda sub, body: LONG))
    monkeypatch.setenv("SCALE_BASE_URL", "http://fake.invalid/v1")
    monkeypatch.setattr("scale_graph.threads.endpoint", _no_preflight)  # scale solve runs as a thread
    code = main(["solve", "--model", "m", "--candidates", "2", "--max-tokens-per-problem", "60", "P?"])
    out = capsys.readouterr().out
    assert code == 3
    assert "stopped after 1 of 3 sub-problems: token budget" in out


def _no_preflight(context, **kwargs):
    from contextlib import nullcontext

    return nullcontext(context)

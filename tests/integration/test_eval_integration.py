"""Every method once on 3 gsm8k_dev problems with the embedded model (structure, not accuracy).

Budgets are tiny so this stays a few minutes on 2 CPU cores; a budget cut or an unparsable decomposition is
fine here (it is recorded as a fallback), since only the shape of the results is checked.
"""

from __future__ import annotations

import pytest

from scale_graph.api import endpoint
from scale_graph.baselines.context import BaselineContext
from scale_graph.eval.datasets import load_dataset
from scale_graph.eval.methods import METHODS, get_method
from scale_graph.eval.metrics import compute
from scale_graph.eval.results import read_rows
from scale_graph.eval.runner import EvalRun, run_eval
from scale_graph.grading import GradingPool

pytestmark = pytest.mark.integration

TINY = BaselineContext(
    base_url=None,
    model=None,
    candidates=1,
    max_subproblems=3,
    samples=2,
    rounds=2,
    round_max_tokens=48,
    system1_max_tokens=48,
    system2_max_tokens=64,
    control_max_tokens=96,
    content_retries=0,
)


@pytest.fixture(scope="module")
def live():
    with endpoint(TINY, slots=3) as ctx, GradingPool(size=1, timeout=30) as pool:
        yield ctx, pool


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_on_three_gsm8k_problems(live, method, tmp_path):
    ctx, pool = live
    run = EvalRun(
        dataset=load_dataset("gsm8k_dev"),
        method=get_method(method),
        context=ctx,
        out_dir=tmp_path,
        limit=3,
        concurrency=3,
        samples=2 if method == "majority" else 1,
    )
    outcome = run_eval(run, pool=pool)
    assert outcome.failed == [] and outcome.done == 3
    rows = read_rows(run.path)
    assert sorted(r["problem_id"] for r in rows) == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    for row in rows:
        assert row["method"] == method and row["verdict"]["status"] in {"ok", "no_answer"}
        assert row["tokens"]["completion"] > 0 and row["tokens"]["calls"] >= 1
        assert row["units"], "every attempt records its units"
        if method == "majority":
            assert len(row["units"]) == 2
        if method == "inftythink":
            assert 1 <= len(row["units"]) <= 2
        if method in {"all-fast", "all-deep"}:
            assert {u["mode"] for u in row["units"]} == {"system1" if method == "all-fast" else "system2"}
    metrics = compute(rows)
    assert 0 <= metrics.acc <= 1 and metrics.tok > 0 and metrics.tpi > 0
    assert run_eval(run, pool=pool).skipped == 3  # a rerun has nothing left to do

"""Eq. 4 routing: d > τ → System 2, else System 1; the boundary, the ablation extremes, and whole-graph routing."""

from __future__ import annotations

import pytest

from scale_graph import solve
from scale_graph.nodes.route import select_mode
from tests.conftest import SUBPROBLEMS, fake_context, make_script


@pytest.mark.parametrize(
    ("difficulty", "threshold", "mode"),
    [
        (0.2, 0.2, "system1"),  # d == τ is System 1
        (0.2000001, 0.2, "system2"),
        (0.0, 0.0, "system1"),
        (1.0, 1.0, "system1"),
        (0.5, 0.2, "system2"),
        (0.1, 0.2, "system1"),
    ],
)
def test_select_mode_is_eq4(difficulty: float, threshold: float, mode: str) -> None:
    assert select_mode(difficulty, threshold) == mode


@pytest.mark.parametrize("d", [0.0, 0.3, 0.999, 1.0])
def test_threshold_extremes_force_one_mode(d: float) -> None:
    assert select_mode(d, 1.0) == "system1"
    assert select_mode(d, -1.0) == "system2"


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (0.2, ["system1", "system1", "system2"]),
        (0.5, ["system1", "system1", "system2"]),
        (0.05, ["system1", "system2", "system2"]),
        (1.0, ["system1", "system1", "system1"]),
        (-1.0, ["system2", "system2", "system2"]),
    ],
)
def test_graph_routes_each_step_by_eq4(fake_models, threshold, expected) -> None:
    scores = dict(zip(SUBPROBLEMS, ['{"difficulty": 0.0}', '{"difficulty": 0.2}', '{"difficulty": 0.9}'], strict=True))
    fakes = fake_models(make_script(difficulty=scores))
    result = solve("P?", context=fake_context(threshold=threshold, candidates=1))
    assert [s["difficulty"] for s in result.steps] == [0.0, 0.2, 0.9]
    assert [s["mode"] for s in result.steps] == expected
    # the solve request really went to the matching profile (system prompt of that mode)
    assert [st for st in fakes.stages() if st.startswith("system")] == expected

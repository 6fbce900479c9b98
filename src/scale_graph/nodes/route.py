"""Stage 3: mode selection (the paper's Eq. 4) and the solve loop's router. τ is read here and nowhere else."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph.context import Context
from scale_graph.nodes._runtime import context_of
from scale_graph.nodes.assess import assess_task
from scale_graph.state import Mode, State


def select_mode(difficulty: float, threshold: float) -> Mode:
    """Eq. 4: System 2 when d > τ, else System 1 (so d == τ is System 1)."""
    return "system2" if difficulty > threshold else "system1"


def route(state: State) -> None:
    """The loop's junction: no state change; :func:`next_step` on its outgoing edge decides where to go."""
    return None


def next_step(state: State, runtime: Runtime[Context]) -> Literal["solve_fast", "solve_deep", "finalize"] | Send:
    """Where the loop goes next (the only reader of τ).

    Finalize when every sub-problem is solved; else assess sub-problem i first (contextual policy, not yet
    scored), or solve it in the mode Eq. 4 picks.
    """
    ctx = context_of(runtime)
    i, n = len(state.get("steps", [])), len(state["subproblems"])
    if i >= n:
        return "finalize"
    assessment = state.get("assessments", {}).get(str(i))
    if assessment is None:
        if ctx.assess != "contextual":
            raise RuntimeError(f"sub-problem {i} has no difficulty assessment under the upfront policy")
        return Send("assess", assess_task(state, i, contextual=True))
    mode = select_mode(assessment["difficulty"], ctx.threshold)
    return "solve_deep" if mode == "system2" else "solve_fast"

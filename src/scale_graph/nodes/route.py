"""Stage 3: mode selection (the paper's Eq. 4) and the solve loop's router.

Eq. 4 is applied here and only here (:func:`select_mode`, called by :func:`next_step`); elsewhere τ is only
recorded or shown. Under a token budget (``Context.token_budget``) the junction sets τ itself, at each decision,
from the plan of :mod:`scale_graph.nodes.budget`; Eq. 4 then routes by that τ.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph.context import Context
from scale_graph.nodes import _runtime
from scale_graph.nodes._runtime import context_of, plan_from, plan_of
from scale_graph.nodes.assess import CONTEXTUAL_POLICIES, assess_task
from scale_graph.nodes.budget import budget_routing
from scale_graph.state import Mode, State


def select_mode(difficulty: float, threshold: float) -> Mode:
    """Eq. 4: System 2 when d > τ, else System 1 (so d == τ is System 1)."""
    return "system2" if difficulty > threshold else "system1"


def budget_stop(state: State, ctx: Context, now: float) -> str | None:
    """Why the run must stop before its next sub-problem (a per-problem budget is spent), else None."""
    used = sum(u["completion_tokens"] for u in (state.get("usage") or {}).values())
    if ctx.max_tokens_per_problem is not None and used >= ctx.max_tokens_per_problem:
        return f"token budget: {used} of {ctx.max_tokens_per_problem} completion tokens used"
    elapsed = now - state.get("started_at", now)
    if ctx.max_seconds_per_problem is not None and elapsed >= ctx.max_seconds_per_problem:
        return f"time budget: {elapsed:.1f} of {ctx.max_seconds_per_problem:g} seconds used"
    return None


def route(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """The loop's junction: record this run segment's τ in the plan; stop the run here when a budget is spent.

    Under a token budget the τ recorded is the plan's effective one (:func:`~scale_graph.nodes.budget.
    budget_routing`), and the plan itself goes to ``budget_routing``.

    :func:`next_step` then picks the way from the state alone, so a state edit at any checkpoint routes too.
    """
    ctx = context_of(runtime)
    update: dict[str, Any] = {"plan": plan_from(ctx)}
    if ctx.token_budget is not None:  # routing under a budget: this decision's τ comes from the plan
        record = budget_routing(state, ctx) or state.get("budget_routing")
        if record is not None:
            update["plan"]["threshold"] = record["threshold"]
            update["budget_routing"] = record
            _runtime.emit(runtime, "budget", index=record["at_step"], threshold=record["threshold"],
                          expected=record["expected"], token_budget=record["token_budget"])
    elif state.get("budget_routing"):
        update["budget_routing"] = None  # a run segment without a budget routes by τ again
    if len(state.get("steps", [])) >= len(state["subproblems"]):
        return update  # nothing left to start: no budget can stop it now
    reason = budget_stop(state, ctx, _runtime.now())
    return {**update, "status": "budget_exhausted", "stop_reason": reason} if reason else update


def next_step(state: State) -> Literal["solve_fast", "solve_deep", "finalize"] | Send:
    """Where the loop goes next: the one place Eq. 4 routes a sub-problem (τ from the run's plan).

    Finalize when every sub-problem is solved or a budget stopped the run; else assess sub-problem i first
    (contextual or agreement policy, not yet scored), or solve it in the mode Eq. 4 picks. It reads only the
    state: LangGraph also calls it, without a runtime, when a state edit is written as ``route``.
    """
    plan = plan_of(state)
    i, n = len(state.get("steps", [])), len(state.get("subproblems") or [])
    if i >= n or state.get("status") == "budget_exhausted":
        return "finalize"
    assessment = state.get("assessments", {}).get(str(i))
    if assessment is None:
        if plan["assess"] not in CONTEXTUAL_POLICIES:
            raise RuntimeError(f"sub-problem {i} has no difficulty assessment under the upfront policy")
        return Send("assess", assess_task(state, i, contextual=True))
    mode = select_mode(assessment["difficulty"], plan["threshold"])
    return "solve_deep" if mode == "system2" else "solve_fast"

"""The entry node: validate the problem, record the plan the branches route by, stamp the start time.

It also records the preset the run uses (``auto`` resolved from the endpoint's model). The start time is kept
across resumes (for the wall-time budget); a new problem on a used thread replaces the per-problem state.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from scale_graph.context import Context
from scale_graph.nodes import _runtime
from scale_graph.nodes._runtime import context_of, plan_from
from scale_graph.problem import check_problem
from scale_graph.state import State

FRESH: dict[str, Any] = {
    "decompositions": Overwrite([]), "assessments": Overwrite({}), "steps": Overwrite([]), "usage": Overwrite({}),
    "subproblems": [], "decomposition_fallback": None, "selection_fallback": None, "answer": None,
    "answer_fallback": None, "status": None, "stop_reason": None,
}
"""The per-problem state a new problem replaces (``Overwrite`` bypasses the append-only reducers)."""


def start(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Reject an unusable problem before any model call; record the plan the branches route by.

    A new problem on a thread that already worked on one (Studio's default gesture, or a checkpointed parent
    graph calling SCALE again) starts a fresh solve: the per-problem state is replaced, not appended to, while
    the earlier run stays in the thread's history. On a first run the start time is kept across resumes (for
    the wall-time budget).
    """
    ctx = context_of(runtime)
    update: dict[str, Any] = {"problem": check_problem(state.get("problem")), "plan": plan_from(ctx)}
    used = bool(state.get("decompositions") or state.get("steps") or state.get("subproblems"))
    if used:
        update.update(FRESH)
    if used or not state.get("started_at"):
        update["started_at"] = _runtime.now()
    preset = _runtime.profiles_of(runtime).preset
    _runtime.emit(runtime, "preset", preset=preset)
    update["preset"] = preset
    return update

"""The entry node: validate the problem, stamp the start time, record the preset the run uses.

The start time is kept across resumes (for the wall-time budget); ``auto`` is resolved from the endpoint's model.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph.context import Context
from scale_graph.nodes import _runtime
from scale_graph.problem import InvalidProblem, check_problem
from scale_graph.state import State


def start(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Reject an unusable problem before any model call; keep the first start time across resumes.

    A thread holds one problem: new input on a thread that already ran one is refused, since the append-only
    candidates and steps would mix the two problems and the answer would be the old one's.
    """
    if state.get("decompositions") or state.get("steps"):
        raise InvalidProblem("this thread already holds a problem: solve each problem on a new thread")
    update: dict[str, Any] = {"problem": check_problem(state.get("problem"))}
    if not state.get("started_at"):
        update["started_at"] = _runtime.now()
    preset = _runtime.profiles_of(runtime).preset
    _runtime.emit(runtime, "preset", preset=preset)
    update["preset"] = preset
    return update

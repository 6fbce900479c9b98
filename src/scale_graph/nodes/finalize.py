"""The answer: the contents of the last ``\\boxed{...}`` in the last sub-problem's solution."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph.answers import extract_boxed
from scale_graph.context import Context
from scale_graph.nodes._runtime import emit
from scale_graph.state import State

NO_BOXED_ANSWER = "no_boxed_answer"
BUDGET_EXHAUSTED = "budget_exhausted"


def finalize(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Take the answer from the last solution; no box, or stopped by a budget → answer None, reason recorded."""
    if state.get("status") == "budget_exhausted":
        emit(runtime, "answer", answer=None, fallback=BUDGET_EXHAUSTED, stop_reason=state.get("stop_reason"))
        return {"answer": None, "answer_fallback": BUDGET_EXHAUSTED}
    steps = state.get("steps", [])
    answer = extract_boxed(steps[-1]["solution"]) if steps else None
    fallback = None if answer is not None else NO_BOXED_ANSWER
    emit(runtime, "answer", answer=answer, fallback=fallback)
    return {"answer": answer, "answer_fallback": fallback, "status": "completed", "stop_reason": None}

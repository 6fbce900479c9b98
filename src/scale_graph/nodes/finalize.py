"""The answer: the contents of the last ``\\boxed{...}`` in the last sub-problem's solution."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime

from scale_graph.context import Context
from scale_graph.nodes._runtime import emit
from scale_graph.state import State

NO_BOXED_ANSWER = "no_boxed_answer"
BUDGET_EXHAUSTED = "budget_exhausted"
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str | None) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; else None."""
    if not text:
        return None
    found = None
    for match in _BOX.finditer(text):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            ch = text[pos]
            if ch == "{" and text[pos - 1] != "\\":
                depth += 1
            elif ch == "}" and text[pos - 1] != "\\":
                depth -= 1
                if depth == 0:
                    found = text[start:pos].strip()
                    break
    return found


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

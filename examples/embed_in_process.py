"""Embed SCALE in your own LangGraph app, in-process: the compiled SCALE graph is one node of a bigger graph.

The parent graph shares SCALE's input key (``problem``) and receives its output keys (``answer``, ``steps``);
the run settings reach SCALE through the parent's ``context`` (same ``Context`` schema). Run it:

    python examples/embed_in_process.py "What is 17 * 23?"

With no ``SCALE_BASE_URL`` the embedded model is started in this process on the first model call.
"""

from __future__ import annotations

import sys
from typing import Any, NotRequired, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph import Context, compile_scale_graph
from scale_graph.api import run_config
from scale_graph.state import StepResult


class TutorState(TypedDict):
    """The parent app's state: SCALE's input and output keys, plus the app's own reply."""

    problem: str
    answer: NotRequired[str | None]
    steps: NotRequired[list[StepResult]]
    reply: NotRequired[str]


def explain(state: TutorState) -> dict[str, Any]:
    """The app's own step after SCALE: turn the result into a reply."""
    steps = state.get("steps") or []
    hard = sum(s["mode"] == "system2" for s in steps)
    return {"reply": f"The answer is {state.get('answer')}: {len(steps)} steps, {hard} of them deliberate."}


def build_tutor(**compile_kwargs: Any) -> CompiledStateGraph:
    """The parent graph: START → scale (the whole SCALE graph as a node) → explain → END."""
    builder = StateGraph(TutorState, context_schema=Context)
    builder.add_node("scale", compile_scale_graph())
    builder.add_node("explain", explain)
    builder.add_edge(START, "scale")
    builder.add_edge("scale", "explain")
    builder.add_edge("explain", END)
    return builder.compile(**compile_kwargs)


if __name__ == "__main__":
    tutor = build_tutor()
    # run_config() gives fan-outs room; the SCALE node keeps the recursion limit its compiled graph carries.
    out = tutor.invoke({"problem": " ".join(sys.argv[1:]) or "What is 17 * 23?"}, run_config(),
                       context=Context(candidates=2))
    print(out["reply"])

"""The SCALE graph: decompose → select → assess → route → solve_fast | solve_deep → … → finalize.

```
START ─▶ start ─Send×k─▶ decompose ─▶ select ─┬─(upfront: Send×n)─▶ assess ─▶ route
                                             └─(contextual)────────────────────▶ route
route: stop here if a budget is spent; then next_step (Eq. 4, the one place τ routes):
  ├─▶ solve_fast   (d ≤ τ, System 1) ─▶ route
  ├─▶ solve_deep   (d > τ, System 2) ─▶ route
  ├─▶ assess       (contextual: score sub-problem i first) ─▶ route
  └─▶ finalize     (all solved, or stopped) ─▶ END
```

The model-calling nodes (decompose, select, assess, solve_fast, solve_deep) are ``async def`` functions on the
chat model's async API, added through :func:`~scale_graph.graph.async_nodes.async_node` so the graph runs under
both ``ainvoke`` / ``astream`` (awaited on the caller's event loop) and ``invoke`` / ``stream`` (each on a LangGraph
worker thread that hands the coroutine to one process-wide event loop); see :mod:`scale_graph.graph.async_nodes`.
start, route and finalize are plain functions: they do no I/O worth awaiting.

The branch functions (plan_decompositions, plan_assessments, next_step) read only the state: the settings they
follow (k, the assessment policy, τ) are copied into it as ``plan`` by start and refreshed by route. LangGraph runs
them without a runtime when a state edit is written (Studio's "edit", ``update_state``), so an edit at any
checkpoint routes as a run would; and a fan-out only starts the tasks whose results are missing, so an edit after
the decompositions or the assessments keeps them (start ─▶ select when all k are gathered).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph.context import Context
from scale_graph.graph.async_nodes import async_node
from scale_graph.graph.policies import RECURSION_LIMIT, TRANSPORT_RETRY
from scale_graph.nodes import (
    assess,
    decompose,
    finalize,
    next_step,
    plan_assessments,
    plan_decompositions,
    route,
    select,
    solve_deep,
    solve_fast,
    start,
)
from scale_graph.state import InputState, OutputState, State

ScaleGraph = CompiledStateGraph[State, Context, InputState, OutputState]
"""The compiled SCALE graph."""


def build_scale_graph() -> StateGraph[State, Context, InputState, OutputState]:
    """The uncompiled SCALE builder; callers compile it with the checkpointer of their choice."""
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("start", start)
    builder.add_node("decompose", async_node(decompose), retry_policy=TRANSPORT_RETRY)
    builder.add_node("select", async_node(select), retry_policy=TRANSPORT_RETRY)
    builder.add_node("assess", async_node(assess), retry_policy=TRANSPORT_RETRY)
    builder.add_node("route", route)
    builder.add_node("solve_fast", async_node(solve_fast), retry_policy=TRANSPORT_RETRY)
    builder.add_node("solve_deep", async_node(solve_deep), retry_policy=TRANSPORT_RETRY)
    builder.add_node("finalize", finalize)

    builder.add_edge(START, "start")
    builder.add_conditional_edges("start", plan_decompositions, ["decompose", "select"])
    builder.add_edge("decompose", "select")
    builder.add_conditional_edges("select", plan_assessments, ["assess", "route"])
    builder.add_edge("assess", "route")
    builder.add_conditional_edges("route", next_step, ["assess", "solve_fast", "solve_deep", "finalize"])
    builder.add_edge("solve_fast", "route")
    builder.add_edge("solve_deep", "route")
    builder.add_edge("finalize", END)
    return builder


def compile_scale_graph(**compile_kwargs: Any) -> ScaleGraph:
    """The compiled SCALE graph (``compile_kwargs`` go to ``StateGraph.compile``, e.g. ``checkpointer``)."""
    compiled = build_scale_graph().compile(name="scale", **compile_kwargs)
    return compiled.with_config(recursion_limit=RECURSION_LIMIT, metadata={"method": "scale"})


graph = compile_scale_graph()
"""The compiled graph without a checkpointer (LangGraph servers add their own)."""

"""The ``inftythink`` baseline (training-free): bounded reasoning rounds joined by summaries.

```
START ─▶ think ─ after_round ─┬─▶ summarize ─▶ think …   (no boxed answer yet, rounds left)
                              └─▶ conclude ─▶ END        (boxed answer, or Context.rounds reached)
```

``think`` and ``summarize`` are ``async def`` nodes added through :func:`~scale_graph.graph.async_nodes.async_node`,
so the graph runs under both the async and the sync API (see :mod:`scale_graph.graph.async_nodes`).
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph.context import Context
from scale_graph.graph.async_nodes import async_node
from scale_graph.graph.policies import TRANSPORT_RETRY
from scale_graph.nodes.inftythink import after_round, conclude, summarize, think
from scale_graph.state import InftyThinkOutput, InftyThinkState, InputState


def build_inftythink_graph() -> StateGraph:
    """The uncompiled ``inftythink`` builder."""
    builder = StateGraph(
        InftyThinkState, context_schema=Context, input_schema=InputState, output_schema=InftyThinkOutput
    )
    builder.add_node("think", async_node(think), retry_policy=TRANSPORT_RETRY)
    builder.add_node("summarize", async_node(summarize), retry_policy=TRANSPORT_RETRY)
    builder.add_node("conclude", conclude)
    builder.add_edge(START, "think")
    builder.add_conditional_edges("think", after_round, ["summarize", "conclude"])
    builder.add_edge("summarize", "think")
    builder.add_edge("conclude", END)
    return builder


def compile_inftythink_graph(**compile_kwargs: object) -> CompiledStateGraph:
    """The compiled ``inftythink`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_inftythink_graph().compile(name="inftythink", **compile_kwargs)  # type: ignore[arg-type]


graph = compile_inftythink_graph()
"""The compiled graph without a checkpointer."""

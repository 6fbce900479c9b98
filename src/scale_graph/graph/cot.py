"""The ``cot`` baseline: one System 2 call with the zero-shot chain-of-thought prompt.

```
START ─▶ sample ─▶ vote (one sample: its answer) ─▶ END
```

``sample`` is an ``async def`` node added through :func:`~scale_graph.graph.async_nodes.async_node`, so the graph
runs under both the async and the sync API (see :mod:`scale_graph.graph.async_nodes`).
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph.context import Context
from scale_graph.graph.async_nodes import async_node
from scale_graph.graph.policies import TRANSPORT_RETRY
from scale_graph.nodes.sample import sample
from scale_graph.nodes.vote import vote
from scale_graph.state import InputState, SamplingOutput, SamplingState


def build_cot_graph() -> StateGraph:
    """The uncompiled ``cot`` builder."""
    builder = StateGraph(
        SamplingState, context_schema=Context, input_schema=InputState, output_schema=SamplingOutput
    )
    builder.add_node("sample", async_node(sample), retry_policy=TRANSPORT_RETRY)
    builder.add_node("vote", vote)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    return builder


def compile_cot_graph(**compile_kwargs: object) -> CompiledStateGraph:
    """The compiled ``cot`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_cot_graph().compile(name="cot", **compile_kwargs)  # type: ignore[arg-type]


graph = compile_cot_graph()
"""The compiled graph without a checkpointer."""

"""The ``majority`` baseline: n System 2 samples drawn concurrently, then a vote by mathematical equivalence.

```
START ─Send×n─▶ sample ─▶ vote ─▶ END
```
n is ``Context.samples``; ties go to the group whose earliest sample came first.
``sample`` is an ``async def`` node added through :func:`~scale_graph.graph.async_nodes.async_node`, so the n
samples are awaited together under ``ainvoke`` and the graph still runs under ``invoke`` (see
:mod:`scale_graph.graph.async_nodes`).
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph.context import Context
from scale_graph.graph.async_nodes import async_node
from scale_graph.graph.policies import TRANSPORT_RETRY
from scale_graph.nodes.sample import plan_samples, sample
from scale_graph.nodes.vote import vote
from scale_graph.state import InputState, SamplingOutput, SamplingState


def build_majority_graph() -> StateGraph:
    """The uncompiled ``majority`` builder."""
    builder = StateGraph(
        SamplingState, context_schema=Context, input_schema=InputState, output_schema=SamplingOutput
    )
    builder.add_node("sample", async_node(sample), retry_policy=TRANSPORT_RETRY)
    builder.add_node("vote", vote)
    builder.add_conditional_edges(START, plan_samples, ["sample"])
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    return builder


def compile_majority_graph(**compile_kwargs: object) -> CompiledStateGraph:
    """The compiled ``majority`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_majority_graph().compile(name="majority", **compile_kwargs)  # type: ignore[arg-type]


graph = compile_majority_graph()
"""The compiled graph without a checkpointer."""

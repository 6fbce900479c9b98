"""The baseline graphs: ``cot``, ``majority`` and ``inftythink``, each exported uncompiled and compiled.

```
cot:         START ─▶ start ─▶ sample ─▶ vote (one sample: its answer) ─▶ END
majority:    START ─▶ start ─Send×n─▶ sample ─▶ vote ─▶ END              (n = BaselineContext.samples)
inftythink:  START ─▶ start ─▶ think ─ after_round ─┬─▶ summarize ─▶ think …   (no boxed answer, rounds left)
                                                    └─▶ conclude ─▶ END  (boxed answer, or BaselineContext.rounds)
```
``start`` checks the problem, copies the knob the branches follow (n, the round limit) into the state, so they
read only the state (a state edit runs them without a runtime), and replaces the per-problem state when a new
problem arrives on a used thread, as SCALE's ``start`` does.
The model-calling nodes (``sample``, ``think``, ``summarize``) are ``async def`` nodes added through
:func:`~scale_graph.graph.async_nodes.async_node`, so each graph runs under both the async and the sync API (see
:mod:`scale_graph.graph.async_nodes`); under ``ainvoke`` the n majority samples are awaited together.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from scale_graph.baselines.context import BaselineContext
from scale_graph.baselines.inftythink import after_round, conclude, start_rounds, summarize, think
from scale_graph.baselines.sampling import plan_samples, sample, start_sampling, vote
from scale_graph.baselines.state import InftyThinkOutput, InftyThinkState, SamplingOutput, SamplingState
from scale_graph.graph.async_nodes import async_node
from scale_graph.graph.policies import TRANSPORT_RETRY
from scale_graph.state import InputState

BaselineGraph = CompiledStateGraph[Any, BaselineContext, InputState, Any]


def _sampling_builder(*, fan_out: bool) -> StateGraph[SamplingState, BaselineContext, InputState, SamplingOutput]:
    builder = StateGraph(SamplingState, context_schema=BaselineContext, input_schema=InputState,
                         output_schema=SamplingOutput)
    builder.add_node("start", start_sampling)
    builder.add_node("sample", async_node(sample), retry_policy=TRANSPORT_RETRY)
    builder.add_node("vote", vote)
    builder.add_edge(START, "start")
    if fan_out:
        builder.add_conditional_edges("start", plan_samples, ["sample"])
    else:
        builder.add_edge("start", "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    return builder


def build_cot_graph() -> StateGraph[SamplingState, BaselineContext, InputState, SamplingOutput]:
    """The uncompiled ``cot`` builder: one System 2 call with the zero-shot chain-of-thought prompt."""
    return _sampling_builder(fan_out=False)


def build_majority_graph() -> StateGraph[SamplingState, BaselineContext, InputState, SamplingOutput]:
    """The uncompiled ``majority`` builder: n System 2 samples drawn concurrently, then a vote by equivalence."""
    return _sampling_builder(fan_out=True)


def build_inftythink_graph() -> StateGraph[InftyThinkState, BaselineContext, InputState, InftyThinkOutput]:
    """The uncompiled ``inftythink`` builder (training-free): bounded reasoning rounds joined by summaries."""
    builder = StateGraph(InftyThinkState, context_schema=BaselineContext, input_schema=InputState,
                         output_schema=InftyThinkOutput)
    builder.add_node("start", start_rounds)
    builder.add_node("think", async_node(think), retry_policy=TRANSPORT_RETRY)
    builder.add_node("summarize", async_node(summarize), retry_policy=TRANSPORT_RETRY)
    builder.add_node("conclude", conclude)
    builder.add_edge(START, "start")
    builder.add_edge("start", "think")
    builder.add_conditional_edges("think", after_round, ["summarize", "conclude"])
    builder.add_edge("summarize", "think")
    builder.add_edge("conclude", END)
    return builder


def compile_cot_graph(**compile_kwargs: Any) -> BaselineGraph:
    """The compiled ``cot`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_cot_graph().compile(name="cot", **compile_kwargs).with_config(metadata={"method": "cot"})


def compile_majority_graph(**compile_kwargs: Any) -> BaselineGraph:
    """The compiled ``majority`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_majority_graph().compile(name="majority", **compile_kwargs).with_config(
        metadata={"method": "majority"})


def compile_inftythink_graph(**compile_kwargs: Any) -> BaselineGraph:
    """The compiled ``inftythink`` graph (``compile_kwargs`` go to ``StateGraph.compile``)."""
    return build_inftythink_graph().compile(name="inftythink", **compile_kwargs).with_config(
        metadata={"method": "inftythink"})


cot = compile_cot_graph()
"""The compiled ``cot`` graph without a checkpointer (LangGraph servers add their own)."""
majority = compile_majority_graph()
"""The compiled ``majority`` graph without a checkpointer."""
inftythink = compile_inftythink_graph()
"""The compiled ``inftythink`` graph without a checkpointer."""

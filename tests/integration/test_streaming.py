"""Streaming through the real OpenAI client: solver tokens (stream_mode="messages"), custom stage events."""

from __future__ import annotations

import pytest

from scale_graph.api import run_config
from scale_graph.context import Context
from scale_graph.graph.scale import graph
from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of

pytestmark = pytest.mark.integration


def script(body):
    if stage_of(body) == "system2":
        return Reply(content="so the total is \\boxed{20}", reasoning="think hard now")
    return scale_script(body)


def test_solver_tokens_and_stage_events_stream() -> None:
    with FakeOpenAIServer(script) as srv:
        tokens: dict[str, list[str]] = {}
        reasoning: list[str] = []
        events: list[dict] = []
        final: dict = {}
        for mode, data in graph.stream({"problem": "P?"}, context=Context(base_url=srv.base_url, candidates=1),
                                       config=run_config(), stream_mode=["messages", "custom", "values"]):
            if mode == "messages":
                chunk, meta = data
                tokens.setdefault(meta["langgraph_node"], []).append(chunk.content)
                reasoning.append(chunk.additional_kwargs.get("reasoning_content") or "")
            elif mode == "custom":
                events.append(data)
            else:
                final = data
        assert all(b["stream"] is True and b["stream_options"] == {"include_usage": True} for b in srv.requests)
    # tokens arrive piece by piece, only from the solver nodes
    assert set(tokens) == {"solve_fast", "solve_deep"}
    assert "".join(tokens["solve_deep"]) == "so the total is \\boxed{20}"
    assert len([t for t in tokens["solve_deep"] if t]) == 5
    assert "".join(reasoning) == "think hard now "
    # the streamed reply is aggregated into the step with its usage and reasoning
    deep = final["steps"][1]
    assert deep["mode"] == "system2" and deep["reasoning"] == "think hard now "
    assert deep["completion_tokens"] == 8 and deep["finish_reason"] == "stop"
    assert final["answer"] == "20"
    # one custom event per stage step, in pipeline order
    kinds = [e["event"] for e in events]
    assert kinds == ["preset", "candidate", "decomposition", "assessed", "assessed", "solving", "solved", "solving",
                     "solved", "answer"]
    solved = [e for e in events if e["event"] == "solved"]
    assert [(e["index"], e["mode"]) for e in solved] == [(0, "system1"), (1, "system2")]

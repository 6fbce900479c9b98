"""Async model nodes through the real OpenAI client (a fake HTTP server): both APIs stream solver tokens, the async
path blocks no event loop, and chat models are never shared between event loops."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from scale_graph import asolve, solve
from scale_graph.api import run_config
from scale_graph.baselines.graphs import cot as cot_graph
from scale_graph.context import Context
from scale_graph.graph.scale import graph as scale_graph
from scale_graph.models.chat import aclose_chat_models
from scale_graph.testing import FakeOpenAIServer, FakeVLLMServer, Reply, scale_script, stage_of

SRC = Path(__file__).resolve().parents[2] / "src"


def test_no_private_langgraph_import() -> None:
    offenders = [p.name for p in SRC.rglob("*.py") if "langgraph._internal" in p.read_text()]
    assert offenders == []


def deep_script(body):
    if stage_of(body) == "system2":
        return Reply(content="so the total is \\boxed{20}", reasoning="think hard now")
    return scale_script(body)


def check_solver_tokens(parts) -> None:
    tokens: dict[str, list[str]] = {}
    for chunk, meta in parts:
        tokens.setdefault(meta["langgraph_node"], []).append(chunk.content)
    assert set(tokens) == {"solve_fast", "solve_deep"}  # only the solvers stream
    assert "".join(tokens["solve_deep"]) == "so the total is \\boxed{20}"
    assert len([t for t in tokens["solve_deep"] if t]) == 5  # piece by piece


def test_solver_tokens_stream_under_the_sync_api() -> None:
    with FakeOpenAIServer(deep_script) as srv:
        check_solver_tokens(list(scale_graph.stream(
            {"problem": "P?"}, context=Context(base_url=srv.base_url, candidates=1), config=run_config(),
            stream_mode="messages")))


async def test_solver_tokens_stream_under_the_async_api() -> None:
    with FakeOpenAIServer(deep_script) as srv:
        check_solver_tokens([part async for part in scale_graph.astream(
            {"problem": "P?"}, context=Context(base_url=srv.base_url, candidates=1), config=run_config(),
            stream_mode="messages")])
        await aclose_chat_models()


async def test_async_runs_make_no_blocking_call_on_the_event_loop() -> None:
    """As ``langgraph dev`` checks (BlockBuster, with the calls it allows): the /models probe runs off the loop, in
    a worker thread; the /tokenize count is awaited on the loop (the loop's connection pool)."""
    blockbuster = pytest.importorskip("blockbuster")
    with FakeVLLMServer(max_model_len=1200) as srv:
        ctx = Context(base_url=srv.base_url, candidates=2, system2_max_tokens=32768)  # counted: /tokenize
        with blockbuster.blockbuster_ctx() as bb:
            for allowed in ("os.stat", "os.listdir", "io.BufferedReader.read", "io.TextIOWrapper.read",
                            "threading.Lock.acquire"):
                bb.functions[allowed].deactivate()
            cot = await cot_graph.ainvoke({"problem": "P?"}, context=ctx)  # its first node asks /models
            scale = await scale_graph.ainvoke({"problem": "P?"}, context=ctx, config=run_config())
        await aclose_chat_models()
    assert len(cot["samples"]) == 1 and scale["answer"] == "20"
    assert srv.tokenize_requests


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # connections of an ended loop can only be dropped
def test_sync_and_repeated_asyncio_runs_share_no_connection() -> None:
    """Each event loop gets its own chat models: a second ``asyncio.run``, or a sync run in between, never reuses
    a connection another loop opened."""

    async def async_then_close() -> str | None:
        result = await asolve("P?", context=context)
        await aclose_chat_models()
        return result.answer

    with FakeOpenAIServer() as srv:
        context = Context(base_url=srv.base_url, model="fake-model", candidates=1)
        answers = [solve("P?", context=context).answer,
                   asyncio.run(asolve("P?", context=context)).answer,
                   asyncio.run(asolve("P?", context=context)).answer,
                   solve("P?", context=context).answer,
                   asyncio.run(async_then_close())]
    gc.collect()
    assert answers == ["20"] * 5

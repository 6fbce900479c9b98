"""Hundreds of requests in flight on one event loop: connection pools sized to the concurrency, no thread pool
between the graph and the model (issue 15 item 3).

Through the real OpenAI client and real HTTP against the fake servers, counting the TCP connections the server
accepts: N requests held in flight together (a barrier in the server) need N connections, and the next N reuse
them, whichever of the endpoint's profiles sends them; ``/tokenize`` counts are awaited on the loop through the
same pool, never in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import httpx
import httpx2
import pytest
from langchain_core.messages import HumanMessage

from scale_graph.context import Context
from scale_graph.models import ModeProfile, acall_model, build_profiles, chat, endpoint, messages_for
from scale_graph.models.budget import afit_budget
from scale_graph.models.chat import KEEPALIVE_CONNECTIONS, aclose_chat_models, chat_model, http_pool, pool_limits
from scale_graph.testing import FakeOpenAIServer, FakeVLLMServer, Reply

IN_FLIGHT = 128
"""More requests at once than the OpenAI client's own pool keeps idle (100)."""


def count_connections(server: FakeOpenAIServer) -> list[Any]:
    """The addresses of the TCP connections ``server`` accepts from now on (a list that fills as they come)."""
    http = server._server
    assert http is not None
    accepted: list[Any] = []
    accept = http.get_request

    def counting_accept() -> Any:
        conn = accept()
        accepted.append(conn[1])
        return conn

    http.get_request = counting_accept  # type: ignore[method-assign]
    http.socket.listen(4 * IN_FLIGHT)  # a burst of connects is not held back by socketserver's backlog of 5
    return accepted


def all_in_flight(n: int) -> Callable[[dict[str, Any]], Reply]:
    """A script that answers no request until ``n`` are in flight at once (each wave of ``n``)."""
    barrier = threading.Barrier(n, timeout=60)

    def script(body: dict[str, Any]) -> Reply:
        barrier.wait()
        return Reply(content="\\boxed{1}")

    return script


def test_concurrent_requests_reuse_their_connections_across_the_endpoints_profiles() -> None:
    with FakeOpenAIServer(all_in_flight(IN_FLIGHT)) as srv:
        profiles = build_profiles(Context(), srv.base_url, "fake-model")
        modes = [profiles.system1, profiles.system2, profiles.control]
        accepted = count_connections(srv)

        async def waves() -> list[str]:
            try:
                first = [acall_model(profiles.system1, messages_for(profiles.system1, None, f"q{i}"))
                         for i in range(IN_FLIGHT)]
                second = [acall_model(modes[i % 3], messages_for(modes[i % 3], None, f"r{i}"))
                          for i in range(IN_FLIGHT)]
                replies = await asyncio.gather(*first)
                replies += await asyncio.gather(*second)
                return [r.content for r in replies]
            finally:
                await aclose_chat_models()

        contents = asyncio.run(waves())
    assert contents == ["\\boxed{1}"] * 2 * IN_FLIGHT
    # The first wave needs one connection per request; the second, sent by three profiles, reuses all of them
    # (before: each profile had a pool of its own keeping 100 idle: 128 + 28 + 43 + 42 connections).
    assert len(accepted) == IN_FLIGHT


def test_token_counts_are_awaited_on_the_loop_through_the_endpoints_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a /tokenize count went through asyncio.to_thread")

    def no_sync_post(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a /tokenize count used a new blocking client")

    clients: list[httpx2.AsyncClient] = []
    apost = endpoint._apost

    async def recording_apost(client: httpx2.AsyncClient, *args: Any) -> Any:
        clients.append(client)
        return await apost(client, *args)

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    monkeypatch.setattr(httpx, "post", no_sync_post)
    monkeypatch.setattr(endpoint, "_apost", recording_apost)
    n = 64
    with FakeVLLMServer(max_model_len=1200) as srv:
        profile = build_profiles(Context(system2_max_tokens=32768), srv.base_url, srv.model,
                                 max_model_len=1200).system2
        accepted = count_connections(srv)

        async def count_twice() -> tuple[list[tuple[int | None, int]], httpx2.AsyncClient]:
            try:
                fits = []
                for wave in range(2):
                    fits += await asyncio.gather(*(afit_budget(profile, [HumanMessage(f"problem {wave}.{i}")])
                                                   for i in range(n)))
                return fits, chat_model(profile).http_async_client
            finally:
                await aclose_chat_models()

        fits, pool = asyncio.run(count_twice())
        assert len(srv.tokenize_requests) == 2 * n
    assert all(cap is not None and 0 < cap < 32768 and counted > 0 for cap, counted in fits)
    assert {id(c) for c in clients} == {id(pool)}  # one pool, the chat models' own
    assert len(accepted) <= n  # reused (before: a new client, and connection, per count: 2n)


def test_the_profiles_of_an_endpoint_share_one_pool_per_loop_closed_with_the_chat_models() -> None:
    ctx = Context()
    here = build_profiles(ctx, "http://127.0.0.1:9/v1", "m")
    there = build_profiles(ctx, "http://127.0.0.1:10/v1", "m")

    async def pools() -> tuple[list[httpx2.AsyncClient], httpx2.AsyncClient]:
        shared = [chat_model(p).http_async_client for p in (here.system1, here.system2, here.control)]
        shared.append(http_pool(here.system1.base_url))
        other = chat_model(there.system1).http_async_client
        await aclose_chat_models()
        assert all(p.is_closed for p in [*shared, other])
        reopened = chat_model(here.system1).http_async_client
        assert not reopened.is_closed and reopened is not shared[0]
        await aclose_chat_models()
        return shared, other

    shared, other = asyncio.run(pools())
    again, _ = asyncio.run(pools())
    assert all(p is shared[0] for p in shared) and other is not shared[0]
    assert again[0] is not shared[0]  # another loop, another pool


def test_pool_limits_follow_the_requests_in_flight_allowed() -> None:
    assert pool_limits(None).max_keepalive_connections == KEEPALIVE_CONNECTIONS >= 1024
    assert pool_limits(8).max_keepalive_connections == KEEPALIVE_CONNECTIONS
    assert pool_limits(4096).max_keepalive_connections == 4096
    assert pool_limits(None).max_connections is None  # the request slots are the only cap

    def profile(limit: int | None) -> ModeProfile:
        return build_profiles(Context(max_concurrent_requests=limit), "http://127.0.0.1:9/v1", "m").system1

    async def pools() -> list[httpx2.AsyncClient]:
        try:
            return [chat_model(profile(limit)).http_async_client for limit in (None, 8, 4096)]
        finally:
            await aclose_chat_models()

    unlimited, eight, many = asyncio.run(pools())
    assert unlimited is eight and many is not unlimited  # 4,096 in flight keep their own 4,096 connections


def test_a_pool_dropped_from_a_full_cache_is_closed_with_its_chat_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat, "MODELS_PER_CACHE", 2)
    first, second, third = (build_profiles(Context(), f"http://127.0.0.1:{port}/v1", "m").system1
                            for port in (9, 10, 11))

    async def fill() -> None:
        try:
            oldest = chat_model(first).http_async_client
            chat_model(second)
            chat_model(third)  # a third endpoint: the least recently used pool goes
            await asyncio.sleep(0.05)
            assert oldest.is_closed
            assert first not in chat.loop_state().models
            assert not chat_model(first).http_async_client.is_closed  # made again, with a new pool
        finally:
            await aclose_chat_models()

    asyncio.run(fill())

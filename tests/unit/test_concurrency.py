"""Concurrency: fan-outs run in parallel, sequential only where Eq. 5 needs it, and the client cap is honoured."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from scale_graph import solve
from scale_graph.api import run_config
from scale_graph.graph.scale import graph
from scale_graph.testing import Reply
from tests.conftest import fake_context, make_script


def slow(script, delay=0.15):
    return lambda body: dataclasses.replace(script(body), delay=delay)


@pytest.mark.parametrize(("cap", "expected"), [(None, 6), (4, 4), (1, 1)])
def test_fan_out_in_flight_respects_the_cap(fake_models, cap, expected) -> None:
    fakes = fake_models(slow(make_script()))
    solve("P?", context=fake_context(candidates=6, max_concurrent_requests=cap))
    assert fakes.max_in_flight == expected


def test_solves_are_sequential_even_without_a_cap(fake_models) -> None:
    order: list[str] = []
    base = make_script()

    def script(body):
        reply = base(body)
        order.append(reply.content if "boxed" in reply.content else "")
        return Reply(content=reply.content, delay=0.05)

    fake_models(script)
    result = solve("P?", context=fake_context(candidates=3))
    solved = [o for o in order if o]
    assert solved == [s["solution"] for s in result.steps]  # requested one after another, in order


async def test_async_path_is_not_throttled_by_the_default_executor(fake_models) -> None:
    from scale_graph import asolve

    fakes = fake_models(slow(make_script()))
    result = await asolve("P?", context=fake_context(candidates=8))
    assert fakes.max_in_flight == 8
    assert result.answer == "30"


async def test_the_async_path_caps_calls_only_where_the_user_asks(fake_models) -> None:
    from scale_graph import asolve

    fakes = fake_models(slow(make_script()))
    await asyncio.gather(*(asolve("P?", context=fake_context(candidates=6, max_concurrent_requests=4))
                           for _ in range(3)))
    assert fakes.max_in_flight == 4  # one limit per endpoint, shared by the concurrent runs


def test_concurrent_sync_runs_share_the_endpoint_limit(fake_models) -> None:
    fakes = fake_models(slow(make_script()))
    with ThreadPoolExecutor(3) as pool:  # as the eval runner runs attempts
        answers = list(pool.map(lambda _: solve("P?", context=fake_context(candidates=4,
                                                                            max_concurrent_requests=2)).answer,
                                range(3)))
    assert answers == ["30"] * 3
    assert fakes.max_in_flight == 2


async def test_many_async_runs_are_in_flight_at_once(fake_models) -> None:
    """No pool between the graph and the model: 100 concurrent runs have more calls in flight than the 64 threads
    the async path used to run nodes in."""
    fakes = fake_models(slow(make_script(), delay=0.2))
    outputs = await asyncio.gather(*(graph.ainvoke({"problem": f"P{i}?"}, config=run_config(),
                                                   context=fake_context(candidates=1))
                                     for i in range(100)))
    assert [o["answer"] for o in outputs] == ["30"] * 100
    assert fakes.max_in_flight > 64

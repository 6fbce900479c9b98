"""Concurrency: fan-outs run in parallel, sequential only where Eq. 5 needs it, and the client cap is honoured."""

from __future__ import annotations

import dataclasses

import pytest

from scale_graph import solve
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

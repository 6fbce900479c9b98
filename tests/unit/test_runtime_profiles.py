"""Nodes resolve a run's model profiles once per settings, then from memory, without a thread hop (issue 15):
hundreds of runs in flight do not queue behind the event loop's few executor threads."""

from __future__ import annotations

import asyncio
import dataclasses

from langgraph.runtime import Runtime

from scale_graph.nodes import _runtime
from tests.conftest import fake_context


def test_profiles_are_resolved_once_per_settings_then_on_the_loop(monkeypatch) -> None:
    resolved: list[float] = []
    real = _runtime.profiles_of

    def counting(runtime):
        resolved.append(runtime.context.threshold)
        return real(runtime)

    hops: list[object] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(func, /, *args, **kwargs):
        hops.append(func)
        return await real_to_thread(func, *args, **kwargs)

    monkeypatch.setattr(_runtime, "profiles_of", counting)
    monkeypatch.setattr(_runtime.asyncio, "to_thread", counting_to_thread)
    monkeypatch.setattr(_runtime, "_RESOLVED", type(_runtime._RESOLVED)())
    ctx = fake_context(threshold=0.3)

    async def many() -> list:
        return await asyncio.gather(*(_runtime.aprofiles_of(Runtime(context=dataclasses.replace(ctx)))
                                      for _ in range(50)))

    first = asyncio.run(_runtime.aprofiles_of(Runtime(context=ctx)))
    again = asyncio.run(many())
    assert resolved == [0.3] and len(hops) == 1  # 51 node calls, one resolution, one thread hop
    assert all(p is first for p in again)
    other = asyncio.run(_runtime.aprofiles_of(Runtime(context=fake_context(threshold=0.7))))
    assert resolved == [0.3, 0.7] and other is not first  # other settings: resolved on their own

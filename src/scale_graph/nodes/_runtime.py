"""What every node needs from the run: its Context, its model profiles, and a way to emit progress events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict
from typing import Any

from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import Runtime

from scale_graph.context import Context
from scale_graph.local import resolve_endpoint
from scale_graph.models import Profiles, resolve_profiles
from scale_graph.state import RoutePlan, State


def now() -> float:
    """Wall-clock time in epoch seconds (one place, so tests can replace the clock)."""
    return time.time()


def context_of[C: Context](runtime: Runtime[C] | None) -> Context:
    """The run's Context (defaults when the caller passed none)."""
    ctx = runtime.context if runtime is not None else None
    if ctx is None:
        return Context()
    if isinstance(ctx, dict):  # some callers hand the context over as a plain dict
        return Context(**ctx)
    return ctx


def plan_from(ctx: Context) -> RoutePlan:
    """The routing settings of ``ctx`` as the state keeps them (see :class:`~scale_graph.state.RoutePlan`)."""
    return RoutePlan(candidates=max(1, ctx.candidates), assess=ctx.assess, threshold=ctx.threshold)


def plan_of(state: State) -> RoutePlan:
    """The routing settings recorded in the state (a thread from before they were recorded: the defaults)."""
    return state.get("plan") or plan_from(Context())


def profiles_of[C: Context](runtime: Runtime[C] | None) -> Profiles:
    """The System 1 / System 2 / control profiles for this run."""
    return resolve_profiles(resolve_endpoint(context_of(runtime)))


_RESOLVED: OrderedDict[str, Profiles] = OrderedDict()
"""Profiles already resolved, by the settings of a Context with an endpoint (most recent last)."""
_RESOLVED_MAX = 256


async def aprofiles_of[C: Context](runtime: Runtime[C] | None) -> Profiles:
    """:func:`profiles_of` for ``async def`` nodes: resolved once per run's settings, then from memory.

    The first call for an endpoint may ask it for ``/models``, or start the embedded model: blocking calls that
    would stall every other run on the loop (``langgraph dev`` refuses them outright), so they run in a thread.
    Every later call with the same settings (every node of every run of an evaluation) is answered on the loop,
    without a thread: hundreds of runs in flight do not queue behind the loop's few executor threads.
    """
    ctx = context_of(runtime)
    key = json.dumps([type(ctx).__name__, dataclasses.asdict(ctx)], sort_keys=True, default=str) \
        if ctx.base_url else None
    if key is not None and (hit := _RESOLVED.get(key)) is not None:
        _RESOLVED.move_to_end(key)
        return hit
    profiles = await asyncio.to_thread(profiles_of, runtime)
    if key is not None:
        _RESOLVED[key] = profiles
        while len(_RESOLVED) > _RESOLVED_MAX:
            _RESOLVED.popitem(last=False)
    return profiles


def emit[C: Context](runtime: Runtime[C] | None, event: str, **data: Any) -> None:
    """Send a custom stream event (``stream_mode="custom"``) named ``event``."""
    if runtime is not None:
        runtime.stream_writer({"event": event, **data})


def trace[C: Context](runtime: Runtime[C] | None, stage: str, problem_id: str | None, *, mode: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """Run name, tags and metadata of one model call, so traces filter by stage, mode, τ, preset and problem.

    The method (``scale``, ``cot`` …) comes from the graph's own config metadata, which every child run inherits.
    """
    ctx = context_of(runtime)
    metadata = {"stage": stage, "problem_id": problem_id, "threshold": ctx.threshold, "preset": ctx.preset,
                **({"mode": mode} if mode else {}), **extra}
    # Only solver tokens are streamed (stream_mode="messages"); the control stages' JSON is not worth streaming.
    tags = [stage] if mode else [stage, TAG_NOSTREAM]
    return {"run_name": f"{stage}_{mode}" if mode else stage, "tags": tags, "metadata": metadata}

"""What every node needs from the run: its Context, its model profiles, and a way to emit progress events."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph.context import Context
from scale_graph.models import Profiles, resolve_profiles


def context_of(runtime: Runtime[Context] | None) -> Context:
    """The run's Context (defaults when the caller passed none)."""
    ctx = runtime.context if runtime is not None else None
    if ctx is None:
        return Context()
    if isinstance(ctx, dict):  # some callers hand the context over as a plain dict
        return Context(**ctx)
    return ctx


def profiles_of(runtime: Runtime[Context] | None) -> Profiles:
    """The System 1 / System 2 / control profiles for this run."""
    return resolve_profiles(context_of(runtime))


def emit(runtime: Runtime[Context] | None, event: str, **data: Any) -> None:
    """Send a custom stream event (``stream_mode="custom"``) named ``event``."""
    if runtime is not None:
        runtime.stream_writer({"event": event, **data})

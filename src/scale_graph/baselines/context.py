"""The baselines' knobs, beside SCALE's.

:class:`BaselineContext` is a :class:`~scale_graph.context.Context` with the fields only ``majority`` and
``inftythink`` read.

The baseline graphs take it as their ``context_schema`` (so Studio shows these fields for them, and not for SCALE);
a plain ``Context`` given to a baseline runs with these fields' defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph.runtime import Runtime

from scale_graph.context import MAX_TOKENS_LIMIT, Context


@dataclass(kw_only=True)
class BaselineContext(Context):
    """Configuration of a baseline run: every SCALE field (models, budgets, sampling) plus the baselines' own."""

    samples: int = field(
        default=4,
        metadata={"description": "majority baseline: System 2 samples drawn concurrently and voted on "
                  "(answers grouped by mathematical equivalence).", "ge": 1, "le": 256},
    )
    rounds: int = field(
        default=4,
        metadata={"description": "inftythink baseline: the most reasoning rounds (each ends with a summary "
                  "the next round starts from); it stops earlier at a boxed answer.", "ge": 1, "le": 40},
    )
    round_max_tokens: int = field(
        default=1024,
        metadata={"description": "inftythink baseline: completion-token budget of one reasoning round (its "
                  "summary has control_max_tokens).", "ge": 1, "le": MAX_TOKENS_LIMIT},
    )


def knobs(runtime: Runtime[BaselineContext] | None) -> BaselineContext:
    """The run's :class:`BaselineContext`: as given, upgraded from a plain Context or dict, or the defaults."""
    ctx = runtime.context if runtime is not None else None
    if isinstance(ctx, BaselineContext):
        return ctx
    data: dict[str, Any] = asdict(ctx) if isinstance(ctx, Context) else dict(ctx or {})
    return BaselineContext(**BaselineContext.own_fields(data))

"""Run policies every graph shares: the transport retry of the model nodes and the SCALE recursion limit.

Kept apart from the graph modules so a baseline (``cot``, ``majority``, ``inftythink``) or ``api.run_config`` can
use them without importing, and so compiling, the SCALE graph.
"""

from __future__ import annotations

from langgraph.types import RetryPolicy

from scale_graph.models import is_retryable

TRANSPORT_RETRY = RetryPolicy(
    initial_interval=1.0, backoff_factor=2.0, max_interval=8.0, max_attempts=4, retry_on=is_retryable
)
"""The one place transport faults (unreachable, timeout, 429, 5xx, malformed body) are retried: up to 3 retries
with exponential backoff. Content faults are retried by the stage itself (``Context.content_retries``)."""

RECURSION_LIMIT = 100
"""Enough supersteps for 3 per sub-problem (assess, route, solve) with the largest allowed decompositions."""

"""Run the blocking model nodes in one dedicated thread pool, on both the sync and the async path.

Nodes are plain functions (so the graphs work with ``invoke`` and inside sync parent graphs). Under ``ainvoke`` /
``astream`` — LangGraph Studio, the production server, ``asolve`` — LangGraph would run them in the
event loop's default executor, which has min(32, CPUs + 4) threads: 6 on a 2-core machine, enough to quietly
serialize a server's concurrent runs. :func:`threaded` gives each node an async twin that runs the same function in
a pool of ``$SCALE_NODE_THREADS`` (default 64) threads, with the caller's context (config, runtime, stream writer).
The cap on requests per endpoint stays where it belongs: ``Context.max_concurrent_requests``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

# LangGraph's RunnableCallable injects `runtime`/`config` into both the sync and the async function.
from langgraph._internal._runnable import RunnableCallable

_POOL = ThreadPoolExecutor(max_workers=int(os.environ.get("SCALE_NODE_THREADS") or 64),
                           thread_name_prefix="scale-node")


def threaded(fn: Callable[..., Any]) -> RunnableCallable:
    """``fn`` as a node that runs in the shared pool when the graph runs async."""

    async def run_in_pool(*args: Any, **kwargs: Any) -> Any:
        context = copy_context()
        return await asyncio.get_running_loop().run_in_executor(_POOL, lambda: context.run(fn, *args, **kwargs))

    return RunnableCallable(fn, run_in_pool, name=fn.__name__)

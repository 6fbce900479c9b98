"""Model-calling nodes are ``async def``; :func:`async_node` lets each one run under the sync API as well.

LangGraph awaits an ``async def`` node under ``ainvoke`` / ``astream``, but its sync ``invoke`` / ``stream`` refuse
a node that has no sync function. So the graphs add each model node as an :class:`AsyncNode`, a plain
``langchain_core`` ``Runnable`` with both entry points, which reads the run's ``Runtime`` with LangGraph's public
``langgraph.runtime.get_runtime()``:

- ``ainvoke`` (Studio, the server, :func:`scale_graph.asolve`): awaits the node on the caller's event loop. No
  thread pool stands between the graph and the model, so every run's calls are in flight at once; the only cap
  is the per-endpoint one the user sets (``Context.max_concurrent_requests``).
- ``invoke`` (:func:`scale_graph.solve`, ``scale_graph.threads``, the evaluation runner, a sync parent graph):
  LangGraph runs the task in one of its worker threads (``max_concurrency`` of the run config sizes that pool,
  see ``api.run_config``), and the worker hands the node's coroutine to one event loop that runs in a daemon
  thread for the whole process, then waits for the result. ``asyncio.run_coroutine_threadsafe`` carries the
  worker's context variables over, so LangGraph's config (callbacks: tracing, ``stream_mode="messages"``) reaches
  the model call as it would on the async path.

Why one shared loop rather than ``asyncio.run`` per call: the chat model's async HTTP client and the per-endpoint
request limit belong to an event loop, so one loop for every sync run keeps one connection pool and one limit per
endpoint for the process; and it works where the caller's thread already runs a loop (a notebook).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.runtime import Runtime, get_runtime

AsyncNodeFunction = Callable[[Any, Runtime[Any]], Coroutine[Any, Any, Any]]

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _forget_loop() -> None:
    global _loop, _loop_thread
    _loop, _loop_thread = None, None


os.register_at_fork(after_in_child=_forget_loop)  # a forked child has the variable but not the thread


def _sync_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for sync runs (started on first use, in a daemon thread)."""
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="scale-sync-nodes", daemon=True)
            _loop_thread.start()
        return _loop


def run_sync[T](coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the process's sync-run event loop and wait for its result in this thread."""
    loop = _sync_loop()
    if threading.current_thread() is _loop_thread:
        coro.close()
        raise RuntimeError("a sync graph run was started from a node running on the sync-run event loop; "
                           "use ainvoke/astream there")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:  # interrupted while waiting (KeyboardInterrupt): stop the call too
        future.cancel()
        raise


class AsyncNode(Runnable[Any, Any]):
    """An ``async def`` node ``(state, runtime) -> update`` that runs under both the async and the sync API."""

    def __init__(self, afunc: AsyncNodeFunction) -> None:
        self.afunc = afunc
        self.name = afunc.__name__

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Await the node on the caller's event loop."""
        return await self.afunc(input, get_runtime())

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Run the node on the process's sync-run event loop and wait for it (see :func:`run_sync`)."""
        return run_sync(self.afunc(input, get_runtime()))


def async_node(afunc: AsyncNodeFunction) -> AsyncNode:
    """``afunc`` as a graph node for both the async and the sync API (see the module docstring)."""
    return AsyncNode(afunc)

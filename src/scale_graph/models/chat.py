"""The chat client of a profile: ``ChatOpenAI`` keeping vLLM's separate reasoning, one per profile and event loop.

An async HTTP connection belongs to the event loop that opened it, so each loop (the sync-run loop of
:mod:`scale_graph.graph.async_nodes`, a server's, each ``asyncio.run``) gets its own instances, and sync callers
theirs; each cache keeps at most :data:`MODELS_PER_CACHE`. Transport retries are off here: they happen in one
place, the node ``RetryPolicy``.

A loop's chat models do not each open their own connections: the profiles that talk to one endpoint share that
loop's connection pool (:func:`http_pool`, also used for the endpoint's ``/tokenize``), sized to the requests in
flight (:func:`pool_limits`), so hundreds of requests at once reuse their connections instead of closing and
reopening them (the OpenAI client's own pool keeps only 100 idle). The pool is an ``httpx2.AsyncClient``, the
client the OpenAI SDK itself uses: httpx's pool (``httpcore`` 1.0) hands the same idle connection to every
request queued at the same moment, so a burst of N requests on N idle connections retries its way through them
(128 took 5.8 s instead of 0.5 s here, long enough for idle connections to expire and be reopened);
``httpcore2`` reserves each idle connection it assigns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
from collections.abc import Mapping
from typing import Any

import httpx2
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from scale_graph.models.endpoint import CONNECT_TIMEOUT
from scale_graph.models.profiles import ModeProfile


class ReplyFault(ValueError):
    """A reply that has the form of a chat completion but cannot be one: no choices, or usage that is not a count.

    Raised by :class:`ChatOpenAICompatible` while it reads the body (or a stream chunk), before langchain-openai
    turns it into a message; :mod:`scale_graph.models.client` turns it into an ``EndpointError``.
    """

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")
"""The usage fields that must be token counts (non-negative integers) when a server reports them."""


def token_count(usage: Mapping[str, Any], name: str) -> int | None:
    """``usage[name]`` as a token count; None when absent; :class:`ReplyFault` when it is not a count."""
    value = usage.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value) or value < 0:
        raise ReplyFault(f"usage.{name} is {value!r}, not a token count; the token budget cannot be kept",
                         retryable=False)
    return int(value)


def checked_usage(usage: Any) -> dict[str, Any] | None:
    """The usage a reply reports, checked; :class:`ReplyFault` for a count that is not one.

    None when it reports none (no usage object, or one without prompt or completion tokens), else the usage with
    its counts as ints.
    """
    if not isinstance(usage, Mapping):
        return None
    counts = {name: token_count(usage, name) for name in USAGE_COUNTS}
    details = usage.get("prompt_tokens_details")
    if isinstance(details, Mapping):
        token_count(details, "cached_tokens")
    if counts["prompt_tokens"] is None or counts["completion_tokens"] is None:
        return None
    return {**usage, **{name: count for name, count in counts.items() if count is not None}}


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` that keeps the separate reasoning text vLLM-style servers return, and checks each reply.

    vLLM's reasoning parsers put the thinking in ``message.reasoning_content`` (older) or ``message.reasoning``
    (newer); plain ``ChatOpenAI`` drops both. We keep it in ``additional_kwargs["reasoning_content"]``.

    Before a body or stream chunk becomes a message it is checked: a body without choices (``[]`` or ``null``)
    and usage counts that are not non-negative integers raise :class:`ReplyFault`; a usage object that reports no
    prompt or completion tokens is dropped (the message then has no ``usage_metadata``: the caller counts).
    """

    def _create_chat_result(self, response: Any, generation_info: dict[str, Any] | None = None) -> ChatResult:
        raw = dict(response) if isinstance(response, Mapping) else response.model_dump(warnings=False)
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ReplyFault(f"the reply has no choices (choices: {json.dumps(choices)})", retryable=True)
        raw["usage"] = checked_usage(raw.get("usage"))
        result = super()._create_chat_result(raw, generation_info)
        for gen, choice in zip(result.generations, choices, strict=False):
            message = choice.get("message") or {}
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning:
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return result

    def _convert_chunk_to_generation_chunk(self, chunk: dict[str, Any], default_chunk_class: type,
                                           base_generation_info: dict[str, Any] | None) -> Any:
        if "usage" in chunk:
            chunk = {**chunk, "usage": checked_usage(chunk["usage"])}
        gen = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        choices = chunk.get("choices") or []
        if gen is not None and choices:
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return gen


def chat_model(profile: ModeProfile) -> ChatOpenAICompatible:
    """The chat model for a profile (cached per profile, and per event loop).

    Called on an event loop, it is that loop's own instance, sending through the loop's connection pool to the
    profile's endpoint (see :class:`LoopState`): an async HTTP connection belongs to the loop that opened it, so
    one instance is never shared by two loops (the sync-run loop of :mod:`scale_graph.graph.async_nodes`, a
    server's, each ``asyncio.run``). Tests replace this function with a fake.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a sync caller
        return _sync_chat_model(profile)
    return loop_state().model(profile)


def _new_chat_model(profile: ModeProfile, http_async_client: httpx2.AsyncClient | None = None
                    ) -> ChatOpenAICompatible:
    """A new chat model for a profile, its async requests sent through ``http_async_client`` when given.

    ``max_retries=0``: transport retries happen in exactly one place, the node ``RetryPolicy``.
    """
    return ChatOpenAICompatible(
        base_url=profile.base_url,
        model=profile.model,
        api_key=SecretStr(profile.api_key or "not-needed"),
        max_completion_tokens=profile.max_tokens,
        temperature=profile.temperature,
        top_p=profile.top_p,
        extra_body=profile.body_extras() or None,
        timeout=httpx2.Timeout(profile.timeout, connect=CONNECT_TIMEOUT),
        max_retries=0,
        stream_usage=True,
        http_async_client=http_async_client,
    )


MODELS_PER_CACHE = 32
"""Chat models kept per event loop (and for sync callers), and connection pools per loop; the least recently used
one is dropped beyond that (a pool is closed, with the models that use it)."""

KEEPALIVE_CONNECTIONS = 1024
"""Idle connections a loop keeps open to one endpoint, at least: enough for 1,024 requests in flight to reuse
their connections; more when ``max_concurrent_requests`` allows more (see :func:`pool_limits`)."""

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default; no longer than vLLM's uvicorn keeps it, 5 s)."""

_sync_chat_model = functools.lru_cache(maxsize=MODELS_PER_CACHE)(_new_chat_model)


def pool_limits(limit: int | None) -> httpx2.Limits:
    """The connection limits of a pool serving at most ``limit`` requests at once (None: no limit set).

    No cap on connections: the request slots (``max_concurrent_requests``) are the only limit on requests in
    flight, so the pool never makes one wait. Idle connections kept: ``limit`` or :data:`KEEPALIVE_CONNECTIONS`,
    whichever is larger, so every request in flight finds its connection again for the next one.
    """
    return httpx2.Limits(max_connections=None, max_keepalive_connections=max(KEEPALIVE_CONNECTIONS, limit or 0),
                        keepalive_expiry=KEEPALIVE_EXPIRY)


class LoopState:
    """What one event loop owns: its connection pools, its chat models and its request slots.

    Only the loop's own thread touches it. The pools of a loop that has ended (``asyncio.run`` returned) are
    closed from the next loop that asks, as well as they can be: their connections can only be dropped by then.
    A short-lived loop can close its own first with :func:`aclose_chat_models`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools: dict[tuple[str, int], httpx2.AsyncClient] = {}
        """One per endpoint (and keep-alive size, see :func:`pool_limits`); least recently used first."""
        self.models: dict[ModeProfile, ChatOpenAICompatible] = {}
        """Least recently used first."""
        self.slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def pool(self, base_url: str, limit: int | None) -> httpx2.AsyncClient:
        """The loop's connection pool to ``base_url`` for requests limited to ``limit`` at once (None: no limit).

        Every profile of that endpoint on this loop shares it when its limit is at most
        :data:`KEEPALIVE_CONNECTIONS`; a larger limit gets a pool of its own that keeps as many connections.
        """
        limits = pool_limits(limit)
        key = (base_url, limits.max_keepalive_connections or 0)
        pool = self.pools.pop(key, None)
        if pool is None:
            pool = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(None, connect=CONNECT_TIMEOUT),
                                      follow_redirects=True)
        self.pools[key] = pool
        if len(self.pools) > MODELS_PER_CACHE:
            self.close(self.pools.pop(next(iter(self.pools))))
        return pool

    def model(self, profile: ModeProfile) -> ChatOpenAICompatible:
        """The loop's chat model for ``profile`` (made on first use; the least recently used beyond 32 dropped)."""
        llm = self.models.pop(profile, None)
        if llm is None:
            llm = _new_chat_model(profile, self.pool(profile.base_url, profile.max_concurrent))
        self.models[profile] = llm
        if len(self.models) > MODELS_PER_CACHE:
            del self.models[next(iter(self.models))]  # its connections are the pool's: nothing to close
        return llm

    def close(self, pool: httpx2.AsyncClient) -> None:
        """Close ``pool``'s connections, soon, on this loop, and drop the chat models that send through it."""
        for profile in [p for p, llm in self.models.items() if llm.http_async_client is pool]:
            del self.models[profile]
        task = self.loop.create_task(pool.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, not raised: connections of an ended loop fail to close, and are dropped


_loops: dict[asyncio.AbstractEventLoop, LoopState] = {}
_loops_lock = threading.Lock()


def loop_state() -> LoopState:
    """The running loop's state (``RuntimeError`` when no loop runs in this thread)."""
    loop = asyncio.get_running_loop()
    with _loops_lock:
        state = _loops.get(loop)
        if state is not None:
            return state
        state = _loops[loop] = LoopState(loop)
        ended = [other for other in _loops if other.is_closed()]
        for other in ended:
            for pool in _loops.pop(other).pools.values():
                state.close(pool)
        return state


def http_pool(base_url: str, limit: int | None = None) -> httpx2.AsyncClient:
    """The running loop's connection pool to ``base_url`` (see :meth:`LoopState.pool`).

    For requests to the endpoint other than chat completions (``/tokenize``), on the connections the chat models
    use.
    """
    return loop_state().pool(base_url, limit)


async def aclose_chat_models() -> None:
    """Close the running loop's connection pools and drop its chat models (before a short-lived loop ends)."""
    state = loop_state()
    pools, state.pools, state.models = list(state.pools.values()), {}, {}
    await asyncio.gather(*(pool.aclose() for pool in pools))

"""The chat client of a profile: ``ChatOpenAI`` keeping vLLM's separate reasoning, one per profile and event loop.

An async HTTP connection belongs to the event loop that opened it, so each loop (the sync-run loop of
:mod:`scale_graph.graph.async_nodes`, a server's, each ``asyncio.run``) gets its own instances, and sync callers
theirs; each cache keeps at most :data:`MODELS_PER_CACHE`. Transport retries are off here: they happen in one
place, the node ``RetryPolicy``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
from collections.abc import Mapping
from typing import Any

import httpx
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
    """The chat model for a profile (cached: one HTTP connection pool per profile, and per event loop).

    Called on an event loop, it is that loop's own instance (see :class:`LoopState`): an async HTTP connection
    belongs to the loop that opened it, so one instance is never shared by two loops (the sync-run loop of
    :mod:`scale_graph.graph.async_nodes`, a server's, each ``asyncio.run``). Tests replace this function with a fake.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a sync caller
        return _sync_chat_model(profile)
    return loop_state().model(profile)


def _new_chat_model(profile: ModeProfile) -> ChatOpenAICompatible:
    """A new chat model for a profile.

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
        timeout=httpx.Timeout(profile.timeout, connect=CONNECT_TIMEOUT),
        max_retries=0,
        stream_usage=True,
    )


MODELS_PER_CACHE = 32
"""Chat models kept per event loop (and for sync callers); the least recently used one is closed beyond that."""

_sync_chat_model = functools.lru_cache(maxsize=MODELS_PER_CACHE)(_new_chat_model)


class LoopState:
    """What one event loop owns: its chat models (with their async HTTP connections) and its request slots.

    Only the loop's own thread touches it. The models of a loop that has ended (``asyncio.run`` returned) are
    closed from the next loop that asks, as well as they can be: their connections can only be dropped by then.
    A short-lived loop can close its own first with :func:`aclose_chat_models`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.models: dict[ModeProfile, ChatOpenAICompatible] = {}
        """Least recently used first."""
        self.slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def model(self, profile: ModeProfile) -> ChatOpenAICompatible:
        """The loop's chat model for ``profile`` (made on first use; the least recently used beyond 32 closed)."""
        llm = self.models.pop(profile, None)
        self.models[profile] = llm = llm if llm is not None else _new_chat_model(profile)
        if len(self.models) > MODELS_PER_CACHE:
            self.close(self.models.pop(next(iter(self.models))))
        return llm

    def close(self, llm: ChatOpenAICompatible) -> None:
        """Close ``llm``'s async HTTP connections, soon, on this loop."""
        task = self.loop.create_task(llm.root_async_client.close())
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
            for llm in _loops.pop(other).models.values():
                state.close(llm)
        return state


async def aclose_chat_models() -> None:
    """Close the running loop's chat models and their HTTP connections (before a short-lived loop ends)."""
    state = loop_state()
    models, state.models = list(state.models.values()), {}
    await asyncio.gather(*(llm.root_async_client.close() for llm in models))

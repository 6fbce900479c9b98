"""The one helper every model call goes through: :func:`acall_model`.

It applies a :class:`~scale_graph.models.profiles.ModeProfile`, fits the completion budget into the endpoint's
context (the reference code's rule: a request's ``max_tokens`` is shrunk so prompt + completion fit, with a small
margin), holds a request slot, measures latency and usage, keeps separate reasoning text, and turns transport
failures into :class:`~scale_graph.models.errors.EndpointError`. This module knows nothing of graphs.

What counts as a transport fault, streamed or not (see docs/reliability.md):

- no reply within ``profile.timeout`` seconds: a deadline for the whole reply, not for each read, so a reply
  trickled a byte at a time cannot outlast it;
- a reply without a finish reason (a stream that stopped half way: no finish reason, no ``[DONE]``), or without
  choices (``[]``, ``null``): retryable, never a finished step;
- usage counts that are not non-negative integers (``-3``, ``"many"``, ``NaN``): not retryable, the token budget
  could not be kept. A reply that reports no usage is counted (see :func:`estimated_usage`), so budgets still hold;
- HTTP 429/5xx, refused or dropped connections, bodies that are not chat completions. On 429 and 503 the
  server's ``Retry-After`` is waited (at most :data:`MAX_RETRY_AFTER` seconds, the request slot released) before
  the error reaches the node ``RetryPolicy``, which then waits its own backoff.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from scale_graph.models.budget import afit_budget
from scale_graph.models.chat import ReplyFault, chat_model, loop_state
from scale_graph.models.endpoint import upper_bound_tokens
from scale_graph.models.errors import EndpointError
from scale_graph.models.profiles import ModeProfile
from scale_graph.state import Usage

CONTEXT_FULL = "context_full"
"""The finish reason of a request that was not sent because its prompt leaves no room in the context."""


@dataclass
class ModelReply:
    """What one model call produced, with its cost."""

    content: str
    reasoning: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency: float
    finish_reason: str | None
    capped_to: int | None = None
    """The completion budget actually sent, when it was shrunk to fit the context (else None)."""
    usage_estimated: bool = False
    """True when the server reported no usage and the tokens were counted here (see :func:`estimated_usage`)."""

    @property
    def sent(self) -> bool:
        """False when the request was never sent (no room left in the context)."""
        return self.finish_reason != CONTEXT_FULL

    def usage(self) -> Usage:
        """The usage record of this call."""
        return Usage(calls=int(self.sent), prompt_tokens=self.prompt_tokens,
                     completion_tokens=self.completion_tokens, cached_tokens=self.cached_tokens,
                     seconds=round(self.latency, 6))

    def fit_note(self) -> str | None:
        """The fallback to record when the budget was shrunk, nothing fitted or the usage was counted, else None."""
        if not self.sent:
            return f"{CONTEXT_FULL}: a {self.prompt_tokens}-token prompt leaves no room to answer"
        notes = [f"budget_capped→{self.capped_to}"] if self.capped_to is not None else []
        if self.usage_estimated:
            notes.append(f"usage_missing→counted {self.completion_tokens} completion tokens from the text")
        return "; ".join(notes) or None


def messages_for(profile: ModeProfile, system: str | None, user: str) -> list[BaseMessage]:
    """System prompt (the stage's, else the profile's) and one user message."""
    sys_text = system if system is not None else profile.system_prompt
    return ([SystemMessage(sys_text)] if sys_text else []) + [HumanMessage(user)]


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}

MAX_RETRY_AFTER = 30.0
"""The longest ``Retry-After`` (seconds) honoured on a 429 or 503: a longer one is waited this long."""


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """The wait a response asks for, in seconds, at most :data:`MAX_RETRY_AFTER`.

    Read from ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date); None when it asks for none or it
    cannot be read.
    """
    seconds: float | None = None
    try:
        if (millis := headers.get("retry-after-ms")) is not None:
            seconds = float(millis) / 1000
        elif (value := headers.get("retry-after")) is not None:
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                seconds = (when - (now or datetime.now(UTC))).total_seconds()
    except (ValueError, TypeError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _endpoint_error(profile: ModeProfile, exc: Exception) -> EndpointError:
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(profile.base_url, f"timed out ({exc})", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return EndpointError(profile.base_url, f"cannot connect ({exc.__cause__ or exc})", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        wait = retry_after(exc.response.headers) if exc.status_code in (429, 503) else None
        return EndpointError(profile.base_url, f"HTTP {exc.status_code}: {exc.message}"
                             + (f" (Retry-After: waited {wait:g} s)" if wait else ""),
                             retryable=exc.status_code in _RETRYABLE_STATUS, retry_after=wait)
    if isinstance(exc, ReplyFault):
        return EndpointError(profile.base_url, exc.reason, retryable=exc.retryable)
    # A body that is not a chat completion (malformed JSON, missing choices): the server is misbehaving.
    return EndpointError(profile.base_url, f"malformed response ({type(exc).__name__}: {exc})", retryable=True)


_MALFORMED_MARKERS = ("Unexpected response type", "Response missing 'choices'", "null value for 'choices'",
                      "Expecting value", "Unterminated string", "Expecting property name")


def _is_malformed_body(exc: Exception) -> bool:
    """True for the errors langchain-openai/openai raise on a body that is not a chat completion."""
    return isinstance(exc, json.JSONDecodeError | ReplyFault) or any(m in str(exc) for m in _MALFORMED_MARKERS)


RequestGate = Callable[[], AbstractAsyncContextManager[Any]]
"""Something to hold around every model request, before its endpoint slot (e.g. a per-tenant limit)."""

_request_gate: RequestGate | None = None


def set_request_gate(gate: RequestGate | None) -> RequestGate | None:
    """Hold ``gate()`` around every model request of this process, outside the endpoint's slot.

    Returns the gate it replaces (None: there was none); ``None`` removes it. The supported way to limit requests
    beyond one endpoint's slots: the server's per-tenant limit (:mod:`scale_graph.server.tenancy`) sets one, so a
    tenant at its limit waits before it takes an endpoint slot and never holds one another tenant could use.
    """
    global _request_gate  # one gate per process, set by the server at start-up
    previous, _request_gate = _request_gate, gate
    return previous


def request_gate() -> RequestGate | None:
    """The gate held around every model request (see :func:`set_request_gate`), if any."""
    return _request_gate


@asynccontextmanager
async def aendpoint_slot(base_url: str, limit: int | None) -> AsyncIterator[None]:
    """Pass the request gate (if any), then hold one of ``limit`` request slots of ``base_url``.

    The slots are shared by every call on this event loop. One loop serves every run of a server, and every sync
    graph run of a process (see :mod:`scale_graph.graph.async_nodes`), so there the limit is the process's.
    """
    gate = _request_gate
    async with gate() if gate is not None else nullcontext():
        if not limit:
            yield
            return
        slots = loop_state().slots
        async with slots.setdefault((base_url, limit), asyncio.Semaphore(limit)):
            yield


_CLIENT_ERRORS = (openai.OpenAIError, ValueError, KeyError, TypeError)
"""What a chat model call may raise that :meth:`_Request.failed` sorts out (anything else propagates as is)."""


@dataclass
class _Request:
    """One model call, ready to send."""

    profile: ModeProfile
    messages: list[BaseMessage]
    cap: int | None
    """The completion budget sent when shrunk to fit the context (0: nothing fits, do not send)."""
    counted: int
    """Prompt tokens counted by the server's tokenizer (0: not counted)."""
    config: RunnableConfig
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, profile: ModeProfile, messages: Sequence[BaseMessage], fitted: tuple[int | None, int], *,
              response_format: dict[str, Any] | None = None, run_name: str | None = None,
              tags: Sequence[str] = (), metadata: Mapping[str, Any] | None = None) -> _Request:
        cap, counted = fitted
        config: RunnableConfig = {
            "run_name": run_name or profile.name, "tags": [profile.name, *tags],
            "metadata": {"mode_profile": profile.name, "model": profile.model, **(metadata or {})},
        }
        request = cls(profile, list(messages), cap, counted, config)
        if response_format is not None:
            # In the body, not as langchain-openai's response_format argument (which takes openai's parse/stream
            # helpers instead of a plain completion): every reply, structured or not, is read and checked the
            # same way, and one cut by its budget comes back with finish reason "length" like any other.
            request.kwargs["extra_body"] = {**profile.body_extras(), "response_format": response_format}
        if cap:
            request.kwargs["max_tokens"] = cap  # langchain-openai sends it as max_completion_tokens
        return request

    @property
    def budget(self) -> int | None:
        """The completion budget sent with the request (None: none)."""
        return self.cap or self.profile.max_tokens or None

    def not_sent(self) -> ModelReply | None:
        """The reply to give without sending when no useful room is left in the context, else None."""
        if self.cap != 0:
            return None
        return ModelReply(content="", reasoning=None, prompt_tokens=self.counted, completion_tokens=0,
                          cached_tokens=0, latency=0.0, finish_reason=CONTEXT_FULL, capped_to=0)

    def reply(self, msg: BaseMessage, latency: float) -> ModelReply:
        """The reply for the chat model's answer; :class:`EndpointError` when it is not a finished reply."""
        reply = reply_from_message(msg, latency)
        reply.capped_to = self.cap
        if not reply.finish_reason:
            raise EndpointError(self.profile.base_url, "the reply ended without a finish reason (cut off after "
                                f"{len(reply.content)} characters; a stream without its last chunk, or no "
                                "choices): not a finished reply", retryable=True)
        if isinstance(msg, AIMessage) and msg.usage_metadata is None:
            reply.prompt_tokens, reply.completion_tokens = estimated_usage(reply, self)
            reply.usage_estimated = True
        return reply

    def failed(self, exc: Exception) -> EndpointError:
        """The :class:`EndpointError` for a call that raised ``exc`` (``exc`` is raised when not about the endpoint)."""
        if isinstance(exc, openai.APIError) or (isinstance(exc, ValueError | KeyError | TypeError)
                                                and _is_malformed_body(exc)):
            return _endpoint_error(self.profile, exc)
        raise exc

    def timed_out(self) -> EndpointError:
        """The error for a reply that did not end within the profile's timeout."""
        return EndpointError(self.profile.base_url, f"timed out after {self.profile.timeout:g} s (the whole reply "
                             "must arrive within request_timeout)", retryable=True)


def estimated_usage(reply: ModelReply, request: _Request) -> tuple[int, int]:
    """Prompt and completion tokens of a reply whose server reported no usage: upper bounds, so budgets hold.

    Completion: the UTF-8 bytes of the content and reasoning (a byte-level tokenizer never makes more tokens than
    bytes), at most the completion budget sent. Prompt: the server tokenizer's count when the budget fit asked
    for one, else the same byte bound over the messages.
    """
    text = reply.content + (reply.reasoning or "")
    completion = len(text.encode())
    if request.budget is not None:
        completion = min(completion, request.budget)
    return request.counted or upper_bound_tokens(request.messages), completion


async def acall_model(
    profile: ModeProfile,
    messages: Sequence[BaseMessage],
    *,
    response_format: dict[str, Any] | None = None,
    run_name: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> ModelReply:
    """Call the model once with ``profile``; raise :class:`EndpointError` on a transport fault.

    The completion budget is shrunk to fit the context (``reply.capped_to``); when no useful room is left the
    request is not sent and the reply is empty with finish reason :data:`CONTEXT_FULL`. The whole reply must
    arrive within ``profile.timeout`` seconds (streamed or not). On a 429 or 503 with ``Retry-After`` the wait
    (at most :data:`MAX_RETRY_AFTER`) is spent here, after the request slot is released, before the error is
    raised. From sync code (a test, a script): ``asyncio.run(acall_model(...))``.
    """
    request = _Request.build(profile, messages, await afit_budget(profile, messages),
                             response_format=response_format, run_name=run_name, tags=tags, metadata=metadata)
    if (skipped := request.not_sent()) is not None:
        return skipped
    async with aendpoint_slot(profile.base_url, profile.max_concurrent):
        start = time.perf_counter()
        deadline = asyncio.timeout(profile.timeout)
        try:
            async with deadline:
                msg = await chat_model(profile).ainvoke(request.messages, config=request.config, **request.kwargs)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            error = request.timed_out()
            error.__cause__ = exc
        except _CLIENT_ERRORS as exc:
            error = request.failed(exc)
            error.__cause__ = exc
        else:
            return request.reply(msg, time.perf_counter() - start)
    if error.retry_after:
        await asyncio.sleep(error.retry_after)
    raise error


def reply_from_message(msg: BaseMessage, latency: float) -> ModelReply:
    """Text, reasoning, usage and finish reason of a chat model's reply."""
    assert isinstance(msg, AIMessage), type(msg)
    usage: Mapping[str, Any] = msg.usage_metadata or {}
    details: Mapping[str, Any] = usage.get("input_token_details") or {}
    content = msg.content if isinstance(msg.content, str) else "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in msg.content
    )
    return ModelReply(
        content=content,
        reasoning=msg.additional_kwargs.get("reasoning_content"),
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(details.get("cache_read") or 0),
        latency=latency,
        finish_reason=msg.response_metadata.get("finish_reason"),
    )

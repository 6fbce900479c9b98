"""The one helper every model call goes through: :func:`acall_model`.

It applies a :class:`~scale_graph.models.profiles.ModeProfile`, fits the completion budget into the endpoint's
context (the reference code's rule: a request's ``max_tokens`` is shrunk so prompt + completion fit, with a small
margin), holds a request slot, measures latency and usage, keeps separate reasoning text, and turns transport
failures into :class:`~scale_graph.models.errors.EndpointError`. The two twins share all of that (:class:`_Request`)
and differ only in how they wait: the chat model's ``ainvoke`` and an ``asyncio`` slot, or ``invoke`` and a
thread slot. This module knows nothing of graphs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from scale_graph.models.budget import afit_budget
from scale_graph.models.chat import chat_model, loop_state
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
        """The fallback to record when the budget was shrunk or nothing fitted, else None."""
        if not self.sent:
            return f"{CONTEXT_FULL}: a {self.prompt_tokens}-token prompt leaves no room to answer"
        return f"budget_capped→{self.capped_to}" if self.capped_to is not None else None


def messages_for(profile: ModeProfile, system: str | None, user: str) -> list[BaseMessage]:
    """System prompt (the stage's, else the profile's) and one user message."""
    sys_text = system if system is not None else profile.system_prompt
    return ([SystemMessage(sys_text)] if sys_text else []) + [HumanMessage(user)]


_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _endpoint_error(profile: ModeProfile, exc: Exception) -> EndpointError:
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(profile.base_url, f"timed out ({exc})", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return EndpointError(profile.base_url, f"cannot connect ({exc.__cause__ or exc})", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        return EndpointError(profile.base_url, f"HTTP {exc.status_code}: {exc.message}",
                             retryable=exc.status_code in _RETRYABLE_STATUS)
    # A body that is not a chat completion (malformed JSON, missing choices): the server is misbehaving.
    return EndpointError(profile.base_url, f"malformed response ({type(exc).__name__}: {exc})", retryable=True)


_MALFORMED_MARKERS = ("Unexpected response type", "Response missing 'choices'", "null value for 'choices'",
                      "Expecting value", "Unterminated string", "Expecting property name")


def _is_malformed_body(exc: Exception) -> bool:
    """True for the errors langchain-openai/openai raise on a body that is not a chat completion."""
    return isinstance(exc, json.JSONDecodeError) or any(m in str(exc) for m in _MALFORMED_MARKERS)


_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@contextmanager
def endpoint_slot(base_url: str, limit: int | None) -> Iterator[None]:
    """Hold one of ``limit`` request slots of ``base_url`` (shared by every sync call of this process)."""
    if not limit:
        yield
        return
    with _slots_lock:
        slot = _slots.setdefault((base_url, limit), threading.BoundedSemaphore(limit))
    with slot:
        yield


@asynccontextmanager
async def aendpoint_slot(base_url: str, limit: int | None) -> AsyncIterator[None]:
    """Hold one of ``limit`` request slots of ``base_url`` (shared by every call on this event loop).

    One loop serves every run of a server, and every sync graph run of a process (see
    :mod:`scale_graph.graph.async_nodes`), so there the limit is the process's.
    """
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
    """One model call, ready to send: everything :func:`call_model` and :func:`acall_model` share."""

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
            request.kwargs["response_format"] = response_format
        if cap:
            request.kwargs["max_tokens"] = cap  # langchain-openai sends it as max_completion_tokens
        return request

    def not_sent(self) -> ModelReply | None:
        """The reply to give without sending when no useful room is left in the context, else None."""
        if self.cap != 0:
            return None
        return ModelReply(content="", reasoning=None, prompt_tokens=self.counted, completion_tokens=0,
                          cached_tokens=0, latency=0.0, finish_reason=CONTEXT_FULL, capped_to=0)

    def reply(self, msg: BaseMessage, latency: float) -> ModelReply:
        """The reply for the chat model's answer."""
        reply = reply_from_message(msg, latency)
        reply.capped_to = self.cap
        return reply

    def failed(self, exc: Exception, latency: float) -> ModelReply:
        """The reply for a call that raised ``exc``, or the :class:`EndpointError` (or ``exc``) to raise."""
        if isinstance(exc, openai.LengthFinishReasonError):
            # A structured reply cut off by the budget is unusable content, not a transport fault: hand back what
            # came, so the stage's bounded content retries and then its fallback apply.
            reply = reply_from_completion(exc.completion, latency)
            reply.capped_to = self.cap
            return reply
        if isinstance(exc, openai.APIError) or (isinstance(exc, ValueError | KeyError | TypeError)
                                                and _is_malformed_body(exc)):
            raise _endpoint_error(self.profile, exc) from exc
        raise exc


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
    request is not sent and the reply is empty with finish reason :data:`CONTEXT_FULL`. From sync code (a test, a
    script): ``asyncio.run(acall_model(...))``.
    """
    request = _Request.build(profile, messages, await afit_budget(profile, messages),
                             response_format=response_format, run_name=run_name, tags=tags, metadata=metadata)
    if (skipped := request.not_sent()) is not None:
        return skipped
    async with aendpoint_slot(profile.base_url, profile.max_concurrent):
        start = time.perf_counter()
        try:
            msg = await chat_model(profile).ainvoke(request.messages, config=request.config, **request.kwargs)
        except _CLIENT_ERRORS as exc:
            return request.failed(exc, time.perf_counter() - start)
        return request.reply(msg, time.perf_counter() - start)


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


def reply_from_completion(completion: Any, latency: float) -> ModelReply:
    """A :class:`ModelReply` from a raw OpenAI ``ChatCompletion`` (when the client refused to parse it)."""
    choice = completion.choices[0] if completion.choices else None
    usage = completion.usage
    details = getattr(usage, "prompt_tokens_details", None)
    return ModelReply(
        content=(choice.message.content if choice else None) or "",
        reasoning=None,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_tokens=(details.cached_tokens or 0) if details else 0,
        latency=latency,
        finish_reason=choice.finish_reason if choice else "length",
    )

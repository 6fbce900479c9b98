"""Mode profiles → chat models, and the one helper every model call goes through.

A *profile* says how to call one mode (System 1, System 2, or the control stages): endpoint, model name, budget,
sampling, extra request body and system prompt. *Presets* turn a :class:`~scale_graph.context.Context` into the
three profiles. :func:`call_model` applies a profile, measures latency and usage, captures separate reasoning
text, and turns transport failures into :class:`EndpointError`; :func:`call_json` adds the bounded content retries
of the structured stages. This module knows nothing of graphs.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.state import Mode, Usage

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a TCP connection to the endpoint."""


class EndpointError(RuntimeError):
    """The model endpoint failed at the transport level (unreachable, timeout, 429/5xx, malformed body).

    ``retryable`` tells the node retry policy whether another attempt may help.
    """

    def __init__(self, url: str, reason: str, *, retryable: bool) -> None:
        super().__init__(f"model endpoint {url}: {reason}")
        self.url = url
        self.reason = reason
        self.retryable = retryable


def is_retryable(exc: BaseException) -> bool:
    """The retry predicate for model nodes: only transport faults that another try may fix."""
    return isinstance(exc, EndpointError) and exc.retryable


@dataclass(frozen=True)
class ModeProfile:
    """How to call one mode of the model."""

    name: str
    """'system1', 'system2' or 'control' (decompose/select/assess)."""
    base_url: str
    """OpenAI-compatible base URL, ending in /v1."""
    model: str
    """Model name sent in the request."""
    max_tokens: int
    """Completion-token budget (sent as ``max_completion_tokens``)."""
    temperature: float = 0.6
    top_p: float = 0.95
    extra_body: str = "{}"
    """Extra request-body fields as a JSON object (a string so the profile stays hashable)."""
    system_prompt: str | None = None
    """System prompt put before the messages, if any."""
    api_key: str | None = None
    timeout: float = 600.0
    max_concurrent: int | None = None
    """Cap on requests in flight to ``base_url`` from this process (None: no cap)."""

    def body_extras(self) -> dict[str, Any]:
        """``extra_body`` as a dict."""
        return dict(json.loads(self.extra_body))


@dataclass(frozen=True)
class Profiles:
    """The three profiles of a run."""

    system1: ModeProfile
    system2: ModeProfile
    control: ModeProfile

    def for_mode(self, mode: Mode) -> ModeProfile:
        """The solve profile of ``mode``."""
        return self.system1 if mode == "system1" else self.system2


def _thinking(enabled: bool) -> str:
    return json.dumps({"chat_template_kwargs": {"enable_thinking": enabled}})


def build_profiles(ctx: Context, base_url: str, model: str, system2_model: str | None = None) -> Profiles:
    """The System 1, System 2 and control profiles of ``ctx.preset`` for a resolved endpoint.

    - ``prompted``: one chat model; System 1 answers directly with a small budget, System 2 is told to reason
      step by step and gets a large one.
    - ``qwen3-hybrid``: one Qwen3 model; ``chat_template_kwargs.enable_thinking`` false for System 1 and the
      control stages, true for System 2.
    - ``paired``: System 2 on its own endpoint/model (e.g. QwQ), System 1 and control on a Qwen3 model with
      thinking off.
    """
    common = dict(temperature=ctx.temperature, top_p=ctx.top_p, api_key=ctx.api_key, timeout=ctx.request_timeout,
                  max_concurrent=ctx.max_concurrent_requests)
    s1_extra = s2_extra = "{}"
    s2_url, s2_model = base_url, model
    if ctx.preset == "qwen3-hybrid":
        s1_extra, s2_extra = _thinking(False), _thinking(True)
    elif ctx.preset == "paired":
        s1_extra = _thinking(False)
        s2_url = ctx.system2_base_url or base_url
        if not (system2_model or ctx.system2_model):
            raise ValueError("preset 'paired' needs a System 2 model: set system2_model / --system2-model")
        s2_model = system2_model or ctx.system2_model or model
    elif ctx.preset != "prompted":
        raise ValueError(f"unknown preset {ctx.preset!r}: choose prompted, qwen3-hybrid or paired")
    return Profiles(
        system1=ModeProfile("system1", base_url, model, ctx.system1_max_tokens, extra_body=s1_extra,
                            system_prompt=prompts.SCALE_SYSTEM, **common),
        system2=ModeProfile("system2", s2_url, s2_model, ctx.system2_max_tokens, extra_body=s2_extra,
                            system_prompt=prompts.SCALE_SYSTEM, **common),
        control=ModeProfile("control", base_url, model, ctx.control_max_tokens, extra_body=s1_extra,
                            system_prompt=prompts.SCALE_SYSTEM, **common),
    )


@functools.lru_cache(maxsize=16)
def served_model_name(base_url: str, api_key: str | None = None) -> str:
    """The first model id the endpoint lists at ``/models`` (used when no model name is configured)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers,
                         timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))
        resp.raise_for_status()
        return str(resp.json()["data"][0]["id"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise EndpointError(base_url, f"cannot list models ({exc}); set the model name explicitly",
                            retryable=False) from exc


def resolve_profiles(ctx: Context) -> Profiles:
    """Profiles for ``ctx``: its endpoint, or the embedded model (started on first use) when none is set."""
    base_url = ctx.base_url
    if not base_url:
        from scale_graph import local

        ctx = local.shared_server().serve(ctx)
        base_url = ctx.base_url
    model = ctx.model or served_model_name(base_url, ctx.api_key)
    return build_profiles(ctx, base_url, model)


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` that keeps the separate reasoning text vLLM-style servers return.

    vLLM's reasoning parsers put the thinking in ``message.reasoning_content`` (older) or ``message.reasoning``
    (newer); plain ``ChatOpenAI`` drops both. We keep it in ``additional_kwargs["reasoning_content"]``.
    """

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        raw = response if isinstance(response, Mapping) else response.model_dump()
        for gen, choice in zip(result.generations, raw.get("choices") or [], strict=False):
            message = choice.get("message") or {}
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if reasoning:
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return result

    def _convert_chunk_to_generation_chunk(self, chunk: dict, default_chunk_class: type,
                                           base_generation_info: dict | None) -> Any:
        gen = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        choices = chunk.get("choices") or []
        if gen is not None and choices:
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                gen.message.additional_kwargs["reasoning_content"] = reasoning
        return gen


@functools.lru_cache(maxsize=32)
def chat_model(profile: ModeProfile) -> ChatOpenAICompatible:
    """The chat model for a profile (cached: one HTTP connection pool per profile).

    ``max_retries=0``: transport retries happen in exactly one place, the node ``RetryPolicy``.
    """
    return ChatOpenAICompatible(
        base_url=profile.base_url,
        model=profile.model,
        api_key=profile.api_key or "not-needed",  # type: ignore[arg-type]
        max_tokens=profile.max_tokens,  # sent as max_completion_tokens
        temperature=profile.temperature,
        top_p=profile.top_p,
        extra_body=profile.body_extras() or None,
        timeout=httpx.Timeout(profile.timeout, connect=CONNECT_TIMEOUT),
        max_retries=0,
        stream_usage=True,
    )


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

    def usage(self) -> Usage:
        """The usage record of this call."""
        return Usage(calls=1, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     cached_tokens=self.cached_tokens, seconds=round(self.latency, 6))


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
    """Hold one of ``limit`` request slots of ``base_url`` (shared by every profile of this process)."""
    if not limit:
        yield
        return
    with _slots_lock:
        slot = _slots.setdefault((base_url, limit), threading.BoundedSemaphore(limit))
    with slot:
        yield


def call_model(
    profile: ModeProfile,
    messages: Sequence[BaseMessage],
    *,
    response_format: dict[str, Any] | None = None,
    run_name: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> ModelReply:
    """Call the model once with ``profile``; raise :class:`EndpointError` on a transport fault."""
    llm = chat_model(profile)
    kwargs: dict[str, Any] = {}
    if response_format is not None:
        kwargs["response_format"] = response_format
    config = {"run_name": run_name or profile.name, "tags": [profile.name, *tags],
              "metadata": {"mode_profile": profile.name, "model": profile.model, **(metadata or {})}}
    with endpoint_slot(profile.base_url, profile.max_concurrent):
        start = time.perf_counter()
        try:
            msg = llm.invoke(list(messages), config=config, **kwargs)  # type: ignore[arg-type]
        except openai.LengthFinishReasonError as exc:
            # A structured reply cut off by the budget is unusable content, not a transport fault: hand back what
            # came, so the stage's bounded content retries and then its fallback apply.
            return reply_from_completion(exc.completion, time.perf_counter() - start)
        except openai.APIError as exc:
            raise _endpoint_error(profile, exc) from exc
        except (ValueError, KeyError, TypeError) as exc:
            if not _is_malformed_body(exc):
                raise
            raise _endpoint_error(profile, exc) from exc
        latency = time.perf_counter() - start
    return reply_from_message(msg, latency)


def reply_from_message(msg: BaseMessage, latency: float) -> ModelReply:
    """Text, reasoning, usage and finish reason of a chat model's reply."""
    assert isinstance(msg, AIMessage), type(msg)
    usage = msg.usage_metadata or {}
    details = usage.get("input_token_details") or {}
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


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` that asks the server to constrain output to ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@dataclass
class JsonResult[T]:
    """The outcome of :func:`call_json`: the parsed value (or None), every reply's cost, the last error."""

    value: T | None
    replies: list[ModelReply] = field(default_factory=list)
    error: str | None = None

    def usage(self) -> Usage:
        """All attempts' usage summed."""
        total = Usage(calls=0, prompt_tokens=0, completion_tokens=0, cached_tokens=0, seconds=0.0)
        for r in self.replies:
            u = r.usage()
            for key in total:
                total[key] += u[key]  # type: ignore[literal-required]
        return total


def call_json[T](
    profile: ModeProfile,
    messages: Sequence[BaseMessage],
    *,
    schema_name: str,
    schema: dict[str, Any],
    parse: Callable[[Any], T],
    retries: int,
    **call_kwargs: Any,
) -> JsonResult[T]:
    """Ask for JSON matching ``schema`` and ``parse`` it, trying at most ``1 + retries`` times.

    ``parse`` gets the decoded JSON and raises ``ValueError`` when the content is unusable; then the call is
    repeated (bounded). Returns with ``value=None`` and the last error when every attempt failed: the caller
    takes its stage's fallback. Transport faults are not handled here; they propagate as :class:`EndpointError`.
    """
    result: JsonResult[T] = JsonResult(value=None)
    for _attempt in range(1 + max(0, retries)):
        reply = call_model(profile, messages, response_format=json_schema_format(schema_name, schema),
                           **call_kwargs)
        result.replies.append(reply)
        try:
            result.value = parse(json.loads(extract_json(reply.content)))
            result.error = None
            return result
        except (ValueError, TypeError, KeyError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:300]
    return result


def extract_json(text: str) -> str:
    """The JSON object in ``text``: the whole text, or the span from the first '{' to the last '}'."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text.removeprefix("json").strip()
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        raise ValueError("no JSON object in the reply")
    return text[start : end + 1]


def check_endpoint(base_url: str, api_key: str | None = None) -> None:
    """Fail fast, naming the URL, when nothing answers at ``base_url`` (a 404 on ``/models`` is fine)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        httpx.get(f"{base_url.rstrip('/')}/models", headers=headers,
                  timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))
    except httpx.HTTPError as exc:
        raise EndpointError(base_url, f"cannot connect ({type(exc).__name__}: {exc}); is the server running?",
                            retryable=False) from exc

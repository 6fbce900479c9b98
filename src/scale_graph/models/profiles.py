"""Mode profiles: how to call System 1, System 2 and the control stages, from a run's Context and its endpoint.

A *preset* decides how the two modes differ:

- ``qwen3-hybrid``: one Qwen3 model. System 2 thinks (T 0.6, top-p 0.95, top-k 20); System 1 and the control
  stages (decompose, select, assess) run with thinking off (T 0.7, top-p 0.8, top-k 20).
- ``paired``: System 2 on its own reasoning model, e.g. QwQ (T 0.6, top-p 0.95, top-k 20); System 1 and control
  on a Qwen3 model with thinking off (T 0.7, top-p 0.8, top-k 20).
- ``prompted``: any chat model (T 0.6, top-p 0.95); System 2 is told to reason step by step, System 1 to answer
  directly.
- ``auto``: ``qwen3-hybrid`` when the endpoint serves a Qwen3 hybrid model, else ``prompted``.

The qwen3-hybrid and paired samplings are the authors' reference code's (``request_qwen``: 0.6/0.95 thinking,
0.7/0.8 non-thinking, top-k 20), and ``enable_thinking`` is sent explicitly both ways. Under those presets System 1
gets the same step-by-step instruction as System 2 (the reference sends one solve prompt; thinking is the only
difference); under ``prompted`` the instruction is what tells the modes apart. An explicit ``temperature``,
``top_p`` or ``top_k`` in the Context applies to every call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models.endpoint import EndpointInfo, endpoint_info, is_qwen3_hybrid
from scale_graph.models.errors import EndpointError
from scale_graph.state import Mode

ResolvedPreset = Literal["prompted", "qwen3-hybrid", "paired"]


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one kind of call."""

    temperature: float
    top_p: float
    top_k: int | None = None
    """Sent in the request body when set (vLLM and llama.cpp read it)."""


THINKING = Sampling(temperature=0.6, top_p=0.95, top_k=20)
"""Qwen3 thinking mode, as the reference code sends it (and Qwen's model card recommends)."""
NON_THINKING = Sampling(temperature=0.7, top_p=0.8, top_k=20)
"""Qwen3 non-thinking mode, as the reference code sends it."""
PROMPTED = Sampling(temperature=0.6, top_p=0.95)
"""The paper's stated sampling, for models with no thinking switch."""


@dataclass(frozen=True)
class ModeProfile:
    """How to call one mode of the model (hashable: one cached chat client per profile)."""

    name: str
    """'system1', 'system2' or 'control' (decompose/select/assess)."""
    base_url: str
    """OpenAI-compatible base URL, ending in /v1."""
    model: str
    """Model name sent in the request."""
    max_tokens: int
    """Completion-token budget (sent as ``max_completion_tokens``; shrunk per request to fit the context)."""
    temperature: float = 0.6
    top_p: float = 0.95
    extra_body: str = "{}"
    """Extra request-body fields as a JSON object (a string so the profile stays hashable)."""
    system_prompt: str | None = None
    """System prompt put before the messages, if any."""
    instruction: str = prompts.SOLVE_DEEP
    """The solve instruction that ends a solve turn in this mode."""
    api_key: str | None = None
    timeout: float = 600.0
    max_concurrent: int | None = None
    """Cap on requests in flight to ``base_url`` from this process (None: no cap)."""
    max_model_len: int | None = None
    """The endpoint's context length; None: requests are not fitted to it."""

    def body_extras(self) -> dict[str, Any]:
        """``extra_body`` as a dict."""
        return dict(json.loads(self.extra_body))

    def chat_template_kwargs(self) -> dict[str, Any] | None:
        """The chat-template switches this profile sends (``enable_thinking``), if any."""
        value = self.body_extras().get("chat_template_kwargs")
        return dict(value) if isinstance(value, dict) else None


@dataclass(frozen=True)
class Profiles:
    """The three profiles of a run, and the preset they were built for."""

    system1: ModeProfile
    system2: ModeProfile
    control: ModeProfile
    preset: ResolvedPreset

    def for_mode(self, mode: Mode) -> ModeProfile:
        """The solve profile of ``mode``."""
        return self.system1 if mode == "system1" else self.system2


def resolve_preset(ctx: Context, model: str) -> ResolvedPreset:
    """``ctx.preset``, with ``auto`` decided by the served model's name."""
    if ctx.preset == "auto":
        return "qwen3-hybrid" if is_qwen3_hybrid(model) else "prompted"
    if ctx.preset not in ("prompted", "qwen3-hybrid", "paired"):
        raise ValueError(f"unknown preset {ctx.preset!r}: choose auto, prompted, qwen3-hybrid or paired")
    return ctx.preset


def _body(sampling: Sampling, ctx: Context, thinking: bool | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    top_k = ctx.top_k if ctx.top_k is not None else sampling.top_k
    if top_k is not None:
        body["top_k"] = top_k
    if thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": thinking}
    return body


def build_profiles(ctx: Context, base_url: str, model: str, *, system2_model: str | None = None,
                   max_model_len: int | None = None) -> Profiles:
    """The System 1, System 2 and control profiles of ``ctx`` for a resolved endpoint and model."""
    preset = resolve_preset(ctx, model)
    s2_url, s2_model = base_url, model
    s1_instruction = prompts.SOLVE_DEEP
    s1: tuple[Sampling, bool | None]
    s2: tuple[Sampling, bool | None]
    if preset == "qwen3-hybrid":
        s1, s2 = (NON_THINKING, False), (THINKING, True)
    elif preset == "paired":
        s2_url = ctx.system2_base_url or base_url
        s2_model = system2_model or ctx.system2_model or ""
        if not s2_model:
            raise ValueError("preset 'paired' needs a System 2 model: set system2_model / --system2-model")
        s1, s2 = (NON_THINKING, False), (THINKING, None)  # a reasoning model thinks with no switch
    else:
        s1, s2 = (PROMPTED, None), (PROMPTED, None)
        s1_instruction = prompts.SOLVE_FAST

    def profile(name: str, url: str, name_of_model: str, budget: int, kind: tuple[Sampling, bool | None],
                instruction: str) -> ModeProfile:
        sampling, thinking = kind
        return ModeProfile(
            name, url, name_of_model, budget,
            temperature=ctx.temperature if ctx.temperature is not None else sampling.temperature,
            top_p=ctx.top_p if ctx.top_p is not None else sampling.top_p,
            extra_body=json.dumps(_body(sampling, ctx, thinking), sort_keys=True),
            system_prompt=prompts.SCALE_SYSTEM, instruction=instruction, api_key=ctx.api_key,
            timeout=ctx.request_timeout, max_concurrent=ctx.max_concurrent_requests,
            max_model_len=ctx.max_model_len or max_model_len,
        )

    return Profiles(
        system1=profile("system1", base_url, model, ctx.system1_max_tokens, s1, s1_instruction),
        system2=profile("system2", s2_url, s2_model, ctx.system2_max_tokens, s2, prompts.SOLVE_DEEP),
        control=profile("control", base_url, model, ctx.control_max_tokens, s1, prompts.SOLVE_DEEP),
        preset=preset,
    )


def _info(base_url: str, ctx: Context, model: str | None) -> EndpointInfo:
    """The endpoint's model and context length, asking the endpoint only for what ``ctx`` does not say.

    With a model name given, an endpoint without ``/models`` is fine (its context length is then unknown).
    """
    if model and ctx.max_model_len:
        return EndpointInfo(model=model, max_model_len=ctx.max_model_len)
    try:
        return endpoint_info(base_url, ctx.api_key)
    except EndpointError:
        if not model:
            raise
        return EndpointInfo(model=model, max_model_len=None)


def resolve_profiles(ctx: Context) -> Profiles:
    """Profiles for ``ctx``, whose endpoint must be set (``local.resolve_endpoint`` supplies the embedded one)."""
    if not ctx.base_url:
        raise ValueError("no model endpoint: set base_url (or let local.resolve_endpoint start the embedded model)")
    info = _info(ctx.base_url, ctx, ctx.model)
    profiles = build_profiles(ctx, ctx.base_url, ctx.model or info.model, max_model_len=info.max_model_len)
    if profiles.system2.base_url != ctx.base_url and not ctx.max_model_len:
        s2 = _info(profiles.system2.base_url, ctx, profiles.system2.model)
        profiles = replace(profiles, system2=replace(profiles.system2, max_model_len=s2.max_model_len))
    return profiles

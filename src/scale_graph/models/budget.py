"""Fitting a request into the endpoint's context, as the reference code does.

A request's completion budget is shrunk so that prompt + completion fit the context with a small margin; with too
little room left the request is not sent at all. The prompt is counted with the server's tokenizer only when a
cheap upper bound says it might not fit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from scale_graph.models.endpoint import count_prompt_tokens, upper_bound_tokens
from scale_graph.models.profiles import ModeProfile

CONTEXT_MARGIN = 50
"""Tokens left free between prompt + completion and the context length (the reference code leaves 50)."""

MIN_COMPLETION_TOKENS = 32
"""Below this much room a request is not sent: the step records ``context_full`` instead."""


async def afit_budget(profile: ModeProfile, messages: Sequence[BaseMessage]) -> tuple[int | None, int]:
    """The completion budget to send for ``messages`` and the prompt tokens counted (0: not counted).

    ``(None, n)``: the profile's own budget fits. ``(cap, n)``: shrink it to ``cap``. ``(0, n)``: less than
    :data:`MIN_COMPLETION_TOKENS` fits, do not send. The prompt is counted with the server's tokenizer (a blocking
    ``/tokenize`` request, run in a worker thread) only when a safe upper bound says it might not fit.
    """
    if not _may_overflow(profile, messages):
        return None, 0
    return _budget_for(profile, await asyncio.to_thread(_count, profile, messages))


def _may_overflow(profile: ModeProfile, messages: Sequence[BaseMessage]) -> bool:
    """True when a safe upper bound on the prompt says prompt + budget might not fit the context."""
    if not profile.max_model_len:
        return False
    return upper_bound_tokens(messages) + profile.max_tokens > profile.max_model_len - CONTEXT_MARGIN


def _count(profile: ModeProfile, messages: Sequence[BaseMessage]) -> int:
    return count_prompt_tokens(profile.base_url, profile.model, messages,
                               chat_template_kwargs=profile.chat_template_kwargs(), api_key=profile.api_key)


def _budget_for(profile: ModeProfile, prompt: int) -> tuple[int | None, int]:
    room = (profile.max_model_len or 0) - CONTEXT_MARGIN
    if prompt + profile.max_tokens <= room:
        return None, prompt
    cap = room - prompt
    return (cap if cap >= MIN_COMPLETION_TOKENS else 0), prompt

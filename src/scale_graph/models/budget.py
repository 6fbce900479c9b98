"""Fitting a request into the endpoint's context, as the reference code does.

A request's completion budget is shrunk so that prompt + completion fit the context with a small margin; with too
little room left the request is not sent at all. The prompt is counted with the server's tokenizer only when a
cheap upper bound says it might not fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from scale_graph.models.chat import http_pool
from scale_graph.models.endpoint import acount_prompt_tokens, upper_bound_tokens
from scale_graph.models.profiles import ModeProfile

CONTEXT_MARGIN = 50
"""Tokens left free between prompt + completion and the context length (the reference code leaves 50)."""

MIN_COMPLETION_TOKENS = 32
"""Below this much room a request is not sent: the step records ``context_full`` instead."""


async def afit_budget(profile: ModeProfile, messages: Sequence[BaseMessage]) -> tuple[int | None, int]:
    """The completion budget to send for ``messages`` and the prompt tokens counted (0: not counted).

    ``(None, n)``: the profile's own budget fits. ``(cap, n)``: shrink it to ``cap``. ``(0, n)``: less than
    :data:`MIN_COMPLETION_TOKENS` fits, do not send. The prompt is counted with the server's tokenizer only when a
    safe upper bound says it might not fit: a ``/tokenize`` request awaited on the running loop, through the
    loop's connection pool to the endpoint (no worker thread, no new connection per count).
    """
    if not _may_overflow(profile, messages):
        return None, 0
    counted = await acount_prompt_tokens(http_pool(profile.base_url, profile.max_concurrent), profile.base_url,
                                         profile.model, messages, chat_template_kwargs=profile.chat_template_kwargs(),
                                         api_key=profile.api_key)
    return _budget_for(profile, counted)


def _may_overflow(profile: ModeProfile, messages: Sequence[BaseMessage]) -> bool:
    """True when a safe upper bound on the prompt says prompt + budget might not fit the context."""
    if not profile.max_model_len:
        return False
    return upper_bound_tokens(messages) + profile.max_tokens > profile.max_model_len - CONTEXT_MARGIN


def _budget_for(profile: ModeProfile, prompt: int) -> tuple[int | None, int]:
    room = (profile.max_model_len or 0) - CONTEXT_MARGIN
    if prompt + profile.max_tokens <= room:
        return None, prompt
    cap = room - prompt
    return (cap if cap >= MIN_COMPLETION_TOKENS else 0), prompt

r"""The data of the baselines (``cot``, ``majority``, ``inftythink``): their states, records and ``Send`` payloads.

Plain ``TypedDict``\ s, like SCALE's in :mod:`scale_graph.state` (whose ``InputState`` and usage reducer they share).
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from scale_graph.state import InputState, Usage, add_usage


class Sample(TypedDict):
    """One independent zero-shot chain-of-thought reply (``cot`` has one, ``majority`` n)."""

    index: int
    """Which sample this is (0-based)."""
    solution: str
    """The visible reply."""
    reasoning: str | None
    """Separate reasoning text, when the backend returns one."""
    answer: str | None
    """The contents of the reply's last ``\\boxed{}``, or None."""
    prompt_tokens: int
    completion_tokens: int
    latency: float
    finish_reason: str | None


class Vote(TypedDict):
    """Answers found mathematically equivalent, and the samples that gave them."""

    answer: str
    """The group's answer as its earliest sample wrote it."""
    samples: list[int]
    """Indices of the samples in the group."""


class SampleTask(TypedDict):
    """The payload ``Send`` gives one chain-of-thought sample."""

    problem: str
    index: int


class SamplingPlan(TypedDict):
    """What the ``majority`` fan-out follows, copied from the Context by ``start`` (so it reads only the state)."""

    samples: int


class InftyThinkPlan(TypedDict):
    """What ``after_round`` follows, copied from the Context by ``start`` (so it reads only the state)."""

    rounds: int


class SamplingState(InputState):
    """The internal state of the ``cot`` and ``majority`` graphs."""

    plan: SamplingPlan
    """n, the samples to draw (``cot``: 1), set by ``start``."""
    samples: Annotated[list[Sample], operator.add]
    """Replies gathered from the fan-out (append-only)."""
    votes: list[Vote]
    """Answer groups, largest first (ties: earliest sample first)."""
    answer: str | None
    answer_fallback: str | None
    usage: Annotated[dict[str, Usage], add_usage]


class SamplingOutput(TypedDict):
    """What the ``cot`` and ``majority`` graphs return."""

    answer: str | None
    """The winning group's answer (``cot``: the one sample's), or None (see ``answer_fallback``)."""
    answer_fallback: str | None
    samples: list[Sample]
    votes: list[Vote]
    usage: dict[str, Usage]
    """Model usage per stage (``solve``)."""


class Round(Sample):
    """One InftyThink round: a bounded stretch of reasoning (``index`` is the round, 0-based).

    Unless it boxed an answer, a :class:`Summary` of it follows.
    """


class Summary(TypedDict):
    """The summary that closes an unanswered round; the next round starts from it."""

    index: int
    """The round it summarizes."""
    text: str
    completion_tokens: int


class InftyThinkState(InputState):
    """The internal state of the ``inftythink`` graph."""

    plan: InftyThinkPlan
    """The most rounds, set by ``start``."""
    rounds: Annotated[list[Round], operator.add]
    summaries: Annotated[list[Summary], operator.add]
    answer: str | None
    answer_fallback: str | None
    usage: Annotated[dict[str, Usage], add_usage]


class InftyThinkOutput(TypedDict):
    """What the ``inftythink`` graph returns."""

    answer: str | None
    """The last round's boxed answer, or None (see ``answer_fallback``)."""
    answer_fallback: str | None
    rounds: list[Round]
    summaries: list[Summary]
    usage: dict[str, Usage]
    """Model usage per stage (``solve`` for the rounds, ``summarize`` for the summaries)."""

"""The run's knobs: a ``Context`` passed as LangGraph's ``context_schema`` and read through ``Runtime[Context]``.

Every field carries a description, so LangGraph Studio shows it. Environment variables only supply defaults for
fields the caller leaves unset (``SCALE_BASE_URL`` and friends); an explicit value always wins.

Every field is also checked when a Context is made, by the rules of :mod:`scale_graph.settings`: a field's type
annotation says its kind, its metadata its range. Settings from outside (CLI flags, an HTTP run's ``context``) go
through :meth:`Context.from_mapping`, which also refuses unknown fields. Anything unusable raises
:class:`~scale_graph.settings.InvalidSettings` naming the field and the reason. Named settings profiles
(``--profile paper``) are :data:`PROFILES`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from scale_graph.settings import URL_PATTERN, field_rules, validate_settings

AssessPolicy = Literal["upfront", "contextual", "agreement"]
PresetName = Literal["auto", "prompted", "qwen3-hybrid", "paired"]
FinalStep = Literal["question", "decomposed"]

MAX_SUBPROBLEMS = 20
"""Default cap on a decomposition's length (longer ones are shortened, with a recorded fallback)."""
MAX_SUBPROBLEMS_LIMIT = 22
"""The largest ``max_subproblems`` accepted. A run has ``graph.policies.RECURSION_LIMIT`` (100) supersteps, and
with ``assess="contextual"`` each sub-problem takes 4 of them: 23 sub-problems fit, 24 end in
``GraphRecursionError`` (measured; one sub-problem is kept spare. Pinned by
``tests/unit/test_settings.py::test_the_largest_decomposition_allowed_fits_the_recursion_limit``)."""

MAX_TOKENS_LIMIT = 1 << 20
"""The largest completion budget of one call a Context accepts (no model has a longer context)."""


@dataclass(kw_only=True)
class Context:
    """Configuration of one SCALE run (paper defaults where the paper gives one).

    Made with values out of range or of the wrong kind, it raises :class:`InvalidSettings`; build one from
    outside data with :meth:`from_mapping` (which also refuses unknown fields).
    """

    threshold: float = field(
        default=0.2,
        metadata={
            "description": "τ of Eq. 4: a sub-problem with difficulty d > τ goes to System 2, else System 1. "
            "τ >= 1 sends everything to System 1, τ < 0 everything to System 2. Paper best: 0.2. Any finite "
            "number."
        },
    )
    candidates: int = field(
        default=8,
        metadata={"description": "k: candidate decompositions sampled concurrently (paper: 8).",
                  "ge": 1, "le": 256},
    )
    assess: AssessPolicy = field(
        default="upfront",
        metadata={
            "description": "'upfront': score every sub-problem at once from P and the earlier sub-problem "
            "texts (reference code). 'contextual': score each just before solving it, with the earlier "
            "solutions in view (paper Eq. 3). 'agreement': just before solving it, sample System 1 "
            "agreement_samples times with its Eq. 5 context and set d from how much the answers disagree; a "
            "step routed to System 1 reuses the modal sample (no extra call)."
        },
    )
    agreement_samples: int = field(
        default=3,
        metadata={"description": "assess='agreement': System 1 samples per sub-problem (m, requested concurrently). "
                  "d = (m - size of the largest group of equal answers) / (m - 1): 0 when all agree, 1 when all "
                  "differ or none has a boxed answer.",
                  "ge": 2, "le": 16},
    )
    final_step: FinalStep = field(
        default="question",
        metadata={
            "description": "'question' (reference code): the last sub-problem is replaced by the original "
            "problem, its difficulty forced to 0.9 (the assessed d is kept beside it), so it is solved by "
            "System 2 at any τ < 0.9 with every earlier result in context. 'decomposed': the decomposition's "
            "own last sub-problem, routed by its assessed d (ablation)."
        },
    )
    preset: PresetName = field(
        default="auto",
        metadata={
            "description": "How System 1/2 differ. 'auto': 'qwen3-hybrid' when the endpoint serves a Qwen3 hybrid "
            "model, else 'prompted'. 'prompted': any chat model, System 2 reasons step by step with a larger "
            "budget. 'qwen3-hybrid': one Qwen3 model, thinking off/on via chat_template_kwargs, with the "
            "reference's per-mode sampling. 'paired': two models/endpoints (e.g. QwQ for System 2)."
        },
    )
    base_url: str | None = field(
        default_factory=lambda: os.environ.get("SCALE_BASE_URL") or None,
        metadata={
            "description": "OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1 for vLLM). Empty: the "
            "embedded llama.cpp model is started in-process. Default: $SCALE_BASE_URL.",
            "pattern": URL_PATTERN,
        },
    )
    model: str | None = field(
        default_factory=lambda: os.environ.get("SCALE_MODEL") or None,
        metadata={"description": "Model name sent to the endpoint (System 1, and System 2 unless set). "
                  "Default: $SCALE_MODEL, else whatever the endpoint serves first."},
    )
    system2_base_url: str | None = field(
        default_factory=lambda: os.environ.get("SCALE_SYSTEM2_BASE_URL") or None,
        metadata={"description": "'paired' only: System 2's endpoint. Default: $SCALE_SYSTEM2_BASE_URL, "
                  "else base_url.",
                  "pattern": URL_PATTERN},
    )
    system2_model: str | None = field(
        default_factory=lambda: os.environ.get("SCALE_SYSTEM2_MODEL") or None,
        metadata={"description": "'paired' only: System 2's model name. Default: $SCALE_SYSTEM2_MODEL."},
    )
    api_key: str | None = field(
        default_factory=lambda: os.environ.get("SCALE_API_KEY") or None,
        metadata={"description": "Bearer key for the endpoint(s). Default: $SCALE_API_KEY, else none."},
    )
    system1_max_tokens: int = field(
        default=512,
        metadata={"description": "Completion-token budget of a System 1 (fast) solve.",
                  "ge": 1, "le": MAX_TOKENS_LIMIT},
    )
    system2_max_tokens: int = field(
        default=2048,
        metadata={"description": "Completion-token budget of a System 2 (deliberate) solve.",
                  "ge": 1, "le": MAX_TOKENS_LIMIT},
    )
    control_max_tokens: int = field(
        default=512,
        metadata={"description": "Completion-token budget of a decomposition, selection or assessment call.",
                  "ge": 1, "le": MAX_TOKENS_LIMIT},
    )
    temperature: float | None = field(
        default=None,
        metadata={"description": "Sampling temperature for every call. Empty: the preset's (qwen3-hybrid: 0.6 "
                  "thinking, 0.7 non-thinking, as the reference code; otherwise 0.6).",
                  "ge": 0},
    )
    top_p: float | None = field(
        default=None,
        metadata={"description": "Nucleus top-p for every call. Empty: the preset's (qwen3-hybrid: 0.95 "
                  "thinking, 0.8 non-thinking; otherwise 0.95).",
                  "gt": 0, "le": 1},
    )
    top_k: int | None = field(
        default=None,
        metadata={"description": "Top-k for every call (sent in the request body). Empty: the preset's "
                  "(qwen3-hybrid and paired: 20; prompted: not sent).",
                  "ge": -1},
    )
    max_model_len: int | None = field(
        default=None,
        metadata={"description": "The endpoint's context length in tokens. Empty: learned from the endpoint "
                  "(vLLM's /v1/models max_model_len), else not enforced. Each request's completion budget is "
                  "capped to what fits after its prompt.",
                  "ge": 1, "le": 1 << 24},
    )
    max_subproblems: int = field(
        default=MAX_SUBPROBLEMS,
        metadata={"description": "The most sub-problems a decomposition keeps. A longer one is still used: its "
                  "first max-1 sub-problems and its last are kept, and the candidate records the fallback.",
                  "ge": 1, "le": MAX_SUBPROBLEMS_LIMIT},
    )
    content_retries: int = field(
        default=2,
        metadata={"description": "Extra attempts when a reply's content is unusable (bad JSON, bad score) "
                  "before the stage's fallback is taken. Transport errors are retried separately.",
                  "ge": 0, "le": 10},
    )
    max_tokens_per_problem: int | None = field(
        default=None,
        metadata={"description": "Budget: completion tokens over all stages of one problem. When reached, no "
                  "further sub-problem is started; the run ends with status 'budget_exhausted' and its partial "
                  "steps. Empty: no cap.",
                  "ge": 1, "le": 10**9},
    )
    max_seconds_per_problem: float | None = field(
        default=None,
        metadata={"description": "Budget: wall-clock seconds since the run started (time stopped before a resume "
                  "counts). Checked before each sub-problem, like the token budget. Empty: no cap.",
                  "gt": 0, "le": 7 * 86_400},
    )
    token_budget: int | None = field(
        default=None,
        metadata={"description": "Budget routing: instead of a fixed τ, give System 2 to the sub-problems in order "
                  "of difficulty while the expected completion tokens of the whole problem (spent so far plus the "
                  "expected cost of the rest) stay within this many; the effective τ chosen is recorded on the "
                  "run. A target, not a cap (max_tokens_per_problem is the cap). Empty: route by threshold.",
                  "ge": 1, "le": 10**9},
    )
    system1_token_cost: float | None = field(
        default=None,
        metadata={"description": "Budget routing: expected completion tokens of one System 1 solve (e.g. from "
                  "`scale calibrate`). Empty: system1_max_tokens. Either is blended with this run's own "
                  "System 1 steps as they are solved.",
                  "gt": 0, "le": MAX_TOKENS_LIMIT},
    )
    system2_token_cost: float | None = field(
        default=None,
        metadata={"description": "Budget routing: expected completion tokens of one System 2 solve (e.g. from "
                  "`scale calibrate`). Empty: system2_max_tokens. Either is blended with this run's own "
                  "System 2 steps as they are solved.",
                  "gt": 0, "le": MAX_TOKENS_LIMIT},
    )
    max_concurrent_requests: int | None = field(
        default=None,
        metadata={"description": "Client-side cap on requests in flight to one endpoint from this process; match "
                  "it to the server's parallel slots. Empty: no cap (the embedded model sets its slot count).",
                  "ge": 1, "le": 4096},
    )
    request_timeout: float = field(
        default=600.0,
        metadata={"description": "Seconds one model reply may take in all, streamed or not: a deadline for the "
                  "whole reply, not for each read (connecting is capped at 10 s).",
                  "gt": 0, "le": 86_400},
    )

    def __post_init__(self) -> None:
        """Check every field: :class:`InvalidSettings` names the first unusable one.

        Whole numbers given for a number field become floats.
        """
        for name, rule in field_rules(type(self)).items():
            value = getattr(self, name)
            checked = rule.check(value)
            if checked is not value:
                setattr(self, name, checked)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """A Context (of this class) from outside data; fields not given keep their defaults.

        Unknown fields and unusable values raise :class:`InvalidSettings`.
        """
        return cls(**validate_settings(data, cls))

    @classmethod
    def own_fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The items of ``data`` that are fields of this class.

        Left out: a subclass's extra settings, settings stored by another version, a profile's baseline knobs.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in data.items() if k in names}

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> Self:
        """A Context (of this class) with settings profile ``name``, ``overrides`` on top.

        Only the profile's fields this class has are taken (``Context.from_profile("paper", base_url=…)`` leaves
        out the baselines' knobs). Unknown profile names raise ``ValueError``.
        """
        return cls.from_mapping(cls.own_fields(profile_overrides(name, overrides)))


PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        # Table 1 as the reference code ran it: k = 8, τ = 0.2, 32K budgets shrunk to fit the context, 8 samples.
        "candidates": 8,
        "threshold": 0.2,
        "assess": "upfront",
        "final_step": "question",
        "system1_max_tokens": 32768,
        "system2_max_tokens": 32768,
        "control_max_tokens": 32768,
        "samples": 8,
        "rounds": 8,
        "round_max_tokens": 6144,
    },
}
"""Named settings profiles (``--profile NAME``): Context fields set together. Explicit values still win."""


def profile_overrides(name: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of profile ``name`` (None: no profile); unknown names raise ``ValueError``."""
    if name is None:
        return dict(overrides)
    if name not in PROFILES:
        raise ValueError(f"unknown settings profile {name!r}; choose one of {', '.join(PROFILES)}")
    return {**PROFILES[name], **overrides}

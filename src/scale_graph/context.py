"""The run's knobs: a ``Context`` passed as LangGraph's ``context_schema`` and read through ``Runtime[Context]``.

Every field carries a description, so LangGraph Studio shows it. Environment variables only supply defaults for
fields the caller leaves unset (``SCALE_BASE_URL`` and friends); an explicit value always wins.

Every field is also checked, in one place: a field's type annotation says its kind (integer, finite number, text,
one of a ``Literal``'s values, optionally empty) and its metadata its range (``ge``, ``gt``, ``le``, ``lt``,
``pattern``: the keys pydantic understands, so the JSON schema Studio shows carries them too). A Context is
checked when it is made (``__post_init__``), and settings from outside (CLI flags, an HTTP run's ``context``) go
through :func:`validate_context` / :func:`validate_settings` first, which also refuse unknown fields. Anything
unusable raises :class:`InvalidSettings` naming the field and the reason. The rules are read from
``dataclasses.fields(cls)``, so a subclass of Context that adds fields is checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

AssessPolicy = Literal["upfront", "contextual"]
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

MAX_PROBLEM_CHARS = 20_000
"""The longest problem text accepted (characters). Longer input is refused before any model call."""

URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$"
"""What an endpoint field must look like: an http(s) URL with a host and no credentials in it."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 controls except tab, newline and carriage return; DEL; C1 controls (U+0080-U+009F)."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""Lone surrogates: not text (they cannot be encoded as UTF-8), but JSON can carry one (``"\\ud800"``)."""
_BLANK = frozenset("\u034f\u115f\u1160\u2800\u3164\uffa0")
"""Characters that show nothing but are not whitespace or format characters (Hangul fillers, the braille blank,
the combining grapheme joiner)."""


class InvalidProblem(ValueError):
    """The problem text cannot be used (empty, too long, control characters). The message says why."""


def _invisible(char: str) -> bool:
    """True for a character that shows nothing.

    Whitespace, a format character (zero-width space, joiners, BOM, direction marks, soft hyphen), a blank filler.
    """
    return char.isspace() or unicodedata.category(char) == "Cf" or char in _BLANK


def check_problem(problem: object) -> str:
    """``problem`` stripped, or :class:`InvalidProblem` with a clear message.

    Refused: not text, empty or only whitespace / zero-width characters, longer than :data:`MAX_PROBLEM_CHARS`,
    C0 or C1 control characters (tab, newline and carriage return are fine), lone surrogates. A problem is plain
    text: whatever it says (even "ignore all instructions…") is only ever put into prompts as the problem, never
    executed.
    """
    if not isinstance(problem, str):
        raise InvalidProblem(f"the problem must be text, got {type(problem).__name__}")
    text = problem.strip()
    if not text:
        raise InvalidProblem("the problem is empty")
    if len(text) > MAX_PROBLEM_CHARS:
        raise InvalidProblem(f"the problem is {len(text)} characters long; the limit is {MAX_PROBLEM_CHARS}")
    if bad := _CONTROL.search(text):
        raise InvalidProblem(f"the problem contains a control character (U+{ord(bad.group()):04X}) at "
                             f"position {bad.start()}")
    if bad := _SURROGATE.search(text):
        raise InvalidProblem(f"the problem contains a lone surrogate (U+{ord(bad.group()):04X}) at position "
                             f"{bad.start()}, which is not valid text")
    if all(_invisible(c) for c in text):
        raise InvalidProblem("the problem is empty: it has only invisible characters (zero-width or format "
                             "characters)")
    return text


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
            "solutions in view (paper Eq. 3)."
        },
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
    max_concurrent_requests: int | None = field(
        default=None,
        metadata={"description": "Client-side cap on requests in flight to one endpoint from this process; match "
                  "it to the server's parallel slots. Empty: no cap (the embedded model sets its slot count).",
                  "ge": 1, "le": 4096},
    )
    request_timeout: float = field(
        default=600.0,
        metadata={"description": "Seconds to wait for one model reply (connecting is capped at 10 s).",
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
    def from_profile(cls, name: str, **overrides: Any) -> Self:
        """A Context (of this class) with settings profile ``name``, ``overrides`` on top.

        Only the profile's fields this class has are taken (``Context.from_profile("paper", base_url=…)`` leaves
        out the baselines' knobs). Unknown profile names raise ``ValueError``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_mapping({k: v for k, v in profile_overrides(name, overrides).items() if k in names})


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


# --- checking settings -----------------------------------------------------------------------------------------


class InvalidSettings(ValueError):
    """A run setting that cannot be used: ``field`` names it (``"context"`` for the whole), ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_BOUNDS = {"ge": ("≥", float.__ge__), "gt": (">", float.__gt__), "le": ("≤", float.__le__), "lt": ("<", float.__lt__)}
"""Range keys of a field's metadata: how a message writes them, and the test a value must pass."""


def _shown(value: object) -> str:
    """``value`` for a message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


@dataclass(frozen=True)
class FieldRule:
    """What one Context field accepts, from its annotation and metadata."""

    name: str
    kind: type
    """int, float, str or bool (a ``Literal`` field: str)."""
    optional: bool
    """None (unset) is allowed."""
    choices: tuple[Any, ...] | None = None
    """A ``Literal`` field's values."""
    bounds: tuple[tuple[str, float], ...] = ()
    """(``ge``/``gt``/``le``/``lt``, limit) pairs."""
    pattern: str | None = None

    def check(self, value: Any) -> Any:
        """``value`` as the field holds it, or :class:`InvalidSettings`.

        An int given for a float field becomes a float.
        """
        if value is None:
            if self.optional:
                return None
            raise InvalidSettings(self.name, "must be set (it cannot be null)")
        if self.choices is not None:
            if value not in self.choices or not isinstance(value, str | int | bool):
                raise InvalidSettings(self.name, f"must be one of {', '.join(map(repr, self.choices))}; got "
                                                 f"{_shown(value)}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise InvalidSettings(self.name, f"must be true or false, got {_shown(value)}")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSettings(self.name, f"must be an integer, got {_shown(value)}")
            self._check_bounds(value)
            return value
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidSettings(self.name, f"must be a number, got {_shown(value)}")
            try:
                number = float(value)
            except OverflowError:
                raise InvalidSettings(self.name, f"must be a finite number, got {_shown(value)}") from None
            if not math.isfinite(number):
                raise InvalidSettings(self.name, f"must be a finite number, got {number}")
            self._check_bounds(number)
            return value if type(value) is float else number
        if self.kind is str:
            if not isinstance(value, str):
                raise InvalidSettings(self.name, f"must be text, got {_shown(value)}")
            if not value.strip():
                raise InvalidSettings(self.name, "must not be empty (leave it unset instead)")
            if bad := _CONTROL.search(value) or _SURROGATE.search(value):
                raise InvalidSettings(self.name, f"contains a control character (U+{ord(bad.group()):04X})")
            if self.pattern is not None and not re.match(self.pattern, value):
                raise InvalidSettings(self.name, f"must be an http(s) URL with a host, got {value[:80]!r}"
                                      if self.pattern == URL_PATTERN else f"must match {self.pattern}")
            return value
        raise InvalidSettings(self.name, f"has a type this check does not know ({self.kind.__name__})")

    def _check_bounds(self, number: float) -> None:
        for key, limit in self.bounds:
            symbol, test = _BOUNDS[key]
            try:
                ok = test(float(number), float(limit))
            except OverflowError:  # an int too large for a float is above every limit
                ok = key in {"ge", "gt"}
            if not ok:
                raise InvalidSettings(self.name, f"must be {symbol} {limit:g}, got {number:g}")


def _rule(f: dataclasses.Field[Any], annotation: Any) -> FieldRule:
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"Context field {f.name}: one type (optionally | None) is supported, got {annotation}")
        annotation = args[0]
    choices = None
    kind = annotation
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        kind = type(choices[0])
    if kind not in (int, float, str, bool):
        raise TypeError(f"Context field {f.name}: type {annotation} has no check")
    bounds = tuple((key, f.metadata[key]) for key in _BOUNDS if key in f.metadata)
    return FieldRule(f.name, kind, optional, choices, bounds, f.metadata.get("pattern"))


_RULES: dict[type, dict[str, FieldRule]] = {}


def field_rules(cls: type) -> dict[str, FieldRule]:
    """Each field of the dataclass ``cls`` (Context or a subclass) → its rule, from annotations and metadata."""
    rules = _RULES.get(cls)
    if rules is None:
        hints = typing.get_type_hints(cls)
        rules = _RULES[cls] = {f.name: _rule(f, hints[f.name]) for f in dataclasses.fields(cls)}
    return rules


def check_setting(name: str, value: Any, cls: type = Context) -> Any:
    """One setting checked and normalised as field ``name`` of ``cls``.

    :class:`InvalidSettings` when the field is unknown or the value unusable.
    """
    rules = field_rules(cls)
    rule = rules.get(name) if isinstance(name, str) else None
    if rule is None:
        near = difflib.get_close_matches(str(name), list(rules), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else f"; known settings: {', '.join(rules)}"
        label = name if isinstance(name, str) and name.isidentifier() else repr(name)
        raise InvalidSettings(label[:80], f"unknown setting{hint}")
    return rule.check(value)


def validate_settings(data: Mapping[str, Any], cls: type = Context) -> dict[str, Any]:
    """``data`` checked field by field (unknown fields refused) and normalised.

    For settings that override others: CLI flags, a resume's overrides, an HTTP run's ``context``.
    :class:`InvalidSettings` on the first problem.
    """
    if not isinstance(data, Mapping):
        raise InvalidSettings("context", f"must be an object of settings, got {_shown(data)}")
    return {name: check_setting(name, value, cls) for name, value in data.items()}


def validate_context(data: Mapping[str, Any], cls: type[Context] = Context) -> Context:
    """A ``cls`` from outside data (see :meth:`Context.from_mapping`)."""
    return cls.from_mapping(data)

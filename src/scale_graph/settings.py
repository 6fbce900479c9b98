"""Checking run settings, in one place: a dataclass field's annotation says its kind, its metadata its range.

A field's type annotation says its kind (integer, finite number, text, one of a ``Literal``'s values, optionally
empty) and its metadata its range (``ge``, ``gt``, ``le``, ``lt``, ``pattern``: the keys pydantic understands, so
the JSON schema Studio shows carries them too). :class:`~scale_graph.context.Context` is checked when it is made,
and settings from outside (CLI flags, an HTTP run's ``context``) go through :func:`validate_settings` first, which
also refuses unknown fields. Anything unusable raises :class:`InvalidSettings` naming the field and the reason. The
rules are read from ``dataclasses.fields(cls)``, so a subclass that adds fields (the baselines' context) is checked
the same way. This module knows no particular settings class.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scale_graph.problem import CONTROL_CHARS, LONE_SURROGATE

URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$"
"""An http(s) URL with a host (the ``pattern`` of endpoint fields)."""

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
            if bad := CONTROL_CHARS.search(value) or LONE_SURROGATE.search(value):
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


def check_setting(name: str, value: Any, cls: type) -> Any:
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


def validate_settings(data: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """``data`` checked field by field (unknown fields refused) and normalised.

    For settings that override others: CLI flags, a resume's overrides, an HTTP run's ``context``.
    :class:`InvalidSettings` on the first problem.
    """
    if not isinstance(data, Mapping):
        raise InvalidSettings("context", f"must be an object of settings, got {_shown(data)}")
    return {name: check_setting(name, value, cls) for name, value in data.items()}

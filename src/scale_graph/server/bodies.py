"""What the server guard checks in a request body, and the one body it rewrites, as plain functions.

Checked: storable JSON, run settings, run input, state edits. Rewritten: a run that continues a thread from its
latest checkpoint without saying so (:func:`resume_latest`). No ASGI here (that is :mod:`scale_graph.server.guard`):
each function takes the body (bytes or parsed JSON) and says what is wrong with it, so it can be tested, and fuzzed,
on its own.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from scale_graph.problem import InvalidProblem, check_problem
from scale_graph.settings import FieldRule, InvalidSettings, field_rules
from scale_graph.state import check_assessments_edit

SERVER_OWNED = frozenset({"base_url", "system2_base_url", "api_key"})
"""Context fields only the server sets."""
Caps = Mapping[str, tuple[int, str]]
"""Context field → (the most a client may set, the variable that says so)."""


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
"""Characters PostgreSQL's JSONB cannot hold: NUL and lone surrogates (JSON can carry both as escapes)."""


class _NonFinite:
    """A number the JSON parser met that is not a finite float (``NaN``, ``Infinity``, ``1e400``)."""

    def __init__(self, text: str) -> None:
        self.text = text


def parse_json(text: str) -> Any:
    """``text`` as JSON, with every non-finite number kept as a :class:`_NonFinite` marker.

    ``ValueError`` when it is not JSON.
    """

    def number(literal: str) -> float | _NonFinite:
        value = float(literal)
        return value if math.isfinite(value) else _NonFinite(literal)

    return json.loads(text, parse_constant=_NonFinite, parse_float=number)


def _children(data: Any, path: str) -> Iterable[tuple[str, Any]]:
    """The (path, value) of each item of a JSON object or array; nothing for anything else."""
    if isinstance(data, dict):
        return ((f"{path}.{k}" if path else str(k), v) for k, v in data.items())
    if isinstance(data, list):
        return ((f"{path}[{i}]", v) for i, v in enumerate(data))
    return ()


def non_finite_at(data: Any, path: str = "") -> str | None:
    """Where the first non-finite number in ``data`` is (``context.threshold``, ``[0].input``), else None."""
    if isinstance(data, _NonFinite):
        return f"{path or 'the body'} ({data.text})"
    for where, value in _children(data, path):
        if found := non_finite_at(value, where):
            return found
    return None


def unstorable_at(data: Any, path: str = "") -> str | None:
    """Where the first string PostgreSQL cannot store is (U+0000 or a lone surrogate, in a value or a key)."""
    if isinstance(data, str):
        if bad := _UNSTORABLE.search(data):
            return f"{path or 'the body'} (U+{ord(bad.group()):04X})"
        return None
    if isinstance(data, dict):
        for key in data:
            if isinstance(key, str) and (bad := _UNSTORABLE.search(key)):
                return f"a key of {path or 'the body'} (U+{ord(bad.group()):04X})"
    for where, value in _children(data, path):
        if found := unstorable_at(value, where):
            return found
    return None


def merged_rules(schemas: Iterable[type]) -> dict[str, FieldRule]:
    """The field rules of every served graph's context schema (a field keeps its first schema's rule)."""
    rules: dict[str, FieldRule] = {}
    for schema in schemas:
        for name, rule in field_rules(schema).items():
            rules.setdefault(name, rule)
    return rules


def settings_problem(data: Any, rules: Mapping[str, FieldRule], caps: Caps) -> str | None:
    """Why the run settings in a JSON body cannot be used, else None.

    Checked: ``context`` and ``config.configurable`` of the body, or of each item of a list (``/runs/batch``).
    """
    for index, item in enumerate(data if isinstance(data, list) else [data]):
        if not isinstance(item, dict):
            continue
        where = f"[{index}]." if isinstance(data, list) else ""
        config = item.get("config")
        configurable = config.get("configurable") if isinstance(config, dict) else None
        for key, fields, strict in (("context", item.get("context"), True),
                                    ("config.configurable", configurable, False)):
            if fields is None:
                continue
            if not isinstance(fields, dict):
                return f"{where}{key}: must be an object of settings, got {type(fields).__name__}"
            try:
                check_fields(fields, rules, caps, strict=strict)
            except InvalidSettings as exc:
                return f"{where}{key}.{exc}"
    return None


def check_fields(fields: Mapping[str, Any], rules: Mapping[str, FieldRule], caps: Caps, *, strict: bool) -> None:
    """:class:`InvalidSettings` for the first unusable setting of ``fields``.

    ``strict``: unknown names too; else only names that look like a misspelt field (``configurable`` also carries
    LangGraph's own keys).
    """
    for name, value in fields.items():
        rule = rules.get(name)
        if rule is None:
            near = difflib.get_close_matches(name, list(rules), n=1, cutoff=0.8 if not strict else 0.6)
            if strict or near:
                hint = f" (did you mean {near[0]!r}?)" if near else f"; known settings: {', '.join(rules)}"
                raise InvalidSettings((name if name.isidentifier() else repr(name))[:80], f"unknown setting{hint}")
            continue
        checked = rule.check(value)
        if name in caps and checked is not None and checked > caps[name][0]:
            limit, env = caps[name]
            raise InvalidSettings(name, f"{checked:g} is over this server's limit of {limit} ({env})")


def server_owned_fields(body: bytes) -> set[str]:
    """The server-owned context fields a JSON request body sets (in ``context`` or ``config.configurable``)."""
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return set()  # not JSON: Aegra answers it
    return owned_fields(data)


def owned_fields(data: Any) -> set[str]:
    """:func:`server_owned_fields` of parsed JSON."""
    found: set[str] = set()
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        config = item.get("config")
        for fields in (item.get("context"), config.get("configurable") if isinstance(config, dict) else None):
            if isinstance(fields, dict):
                found |= SERVER_OWNED & set(fields)
    return found


def run_input_problem(data: Any) -> tuple[int, str] | None:
    """(HTTP status, message) when a parsed run-creating body carries an unusable ``input``; else None.

    The body is one run, or a ``/runs/batch`` list of them.
    """
    for item in data if isinstance(data, list) else [data]:  # /runs/batch sends a list
        if not isinstance(item, dict) or item.get("input") is None:
            continue
        run_input = item["input"]
        if not isinstance(run_input, dict):
            return 422, f"input must be an object with a 'problem', got {type(run_input).__name__}"
        if "problem" not in run_input:
            return 422, "input has no 'problem' (the problem text to solve)"
        try:
            check_problem(run_input["problem"])
        except InvalidProblem as exc:
            return 422, f"invalid problem: {exc}"
    return None


RESUMING = ("input", "command", "checkpoint", "checkpoint_id")
"""The fields of a run-creating body, any of which says where the run starts (Aegra needs one of them)."""
LATEST_CHECKPOINT: dict[str, Any] = {"checkpoint_ns": ""}
"""The ``checkpoint`` that names no checkpoint id: LangGraph continues from the thread's latest."""


def resume_latest(data: Any) -> dict[str, Any] | None:
    """The body a run on a thread should have when it sets none of :data:`RESUMING`; None for any other body.

    ``runs.wait(thread_id, "scale", input=None)`` continues the thread from its latest checkpoint on LangGraph's
    servers, but Aegra refuses a body without ``input``, ``command`` or ``checkpoint`` (422). The same request
    with ``checkpoint: {"checkpoint_ns": ""}`` (no id: the latest) is Aegra's way to say it.
    """
    if not isinstance(data, dict) or any(data.get(name) is not None for name in RESUMING):
        return None
    return {**data, "checkpoint": dict(LATEST_CHECKPOINT)}


def assessments_edit_problem(data: Any) -> str | None:
    """Why a state edit's ``assessments`` cannot be written, else None.

    ``data`` is the body of ``POST /threads/{id}/state`` (``values``: one update or a list of them) or of a run
    (``command.update``: a mapping, or a list of ``[channel, value]`` pairs). Each ``assessments`` value is
    checked by :func:`scale_graph.state.check_assessments_edit`, as the state's reducer will check it, so a bad
    one is refused before Aegra writes anything (it answered 500).
    """
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        command = item.get("command")
        updates = [item.get("values"), command.get("update") if isinstance(command, dict) else None]
        for update in updates:
            for value in _assessments_writes(update):
                try:
                    check_assessments_edit(value)
                except ValueError as exc:
                    return str(exc)
    return None


def _assessments_writes(update: Any) -> Iterable[Any]:
    """The ``assessments`` values an update writes (None writes nothing: the reducer keeps what is there)."""
    for one in update if isinstance(update, list) else [update]:
        if isinstance(one, dict) and one.get("assessments") is not None:
            yield one["assessments"]
        elif isinstance(one, list | tuple) and len(one) == 2 and one[0] == "assessments" and one[1] is not None:
            yield one[1]

"""Property tests (hypothesis): problem validation, parsing model replies, answer extraction, run settings, the
server's body checks and terminal text — so the next malformed input is found by a test, not a user."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scale_graph.answers import extract_boxed
from scale_graph.cli.runner import terminal_text
from scale_graph.context import Context
from scale_graph.models.structured import UNUSABLE_CONTENT, extract_json
from scale_graph.nodes.assess import parse_difficulty
from scale_graph.nodes.decompose import parse_decomposition
from scale_graph.problem import MAX_PROBLEM_CHARS, InvalidProblem, check_problem
from scale_graph.server.bodies import non_finite_at, parse_json, run_input_problem, settings_problem, unstorable_at
from scale_graph.settings import FieldRule, InvalidSettings, field_rules

settings.register_profile("scale", database=None, deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("scale")

CAUGHT_BY_ACALL_JSON = UNUSABLE_CONTENT
"""What ``models.structured.acall_json`` turns into a retry and then the stage's fallback."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
"""Anything JSON (or Python's json module, which also writes NaN and Infinity) can carry."""

# --- problem validation ----------------------------------------------------------------------------------------


@given(st.one_of(st.text(), st.text(alphabet=st.characters(codec="utf-8")), st.binary(), st.integers(), st.none()))
@example("\u200b\u200d\ufeff")
@example("1+1\x9b?")
@example("x" * (MAX_PROBLEM_CHARS + 1))
def test_check_problem_accepts_only_usable_text_and_is_idempotent(problem) -> None:
    try:
        text = check_problem(problem)
    except InvalidProblem:
        return
    assert isinstance(text, str) and text == text.strip() and 0 < len(text) <= MAX_PROBLEM_CHARS
    assert not any((ord(c) < 0x20 and c not in "\t\n\r") or 0x7f <= ord(c) <= 0x9f for c in text)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    text.encode("utf-8")  # storable and sendable
    assert any(not c.isspace() for c in text)
    assert check_problem(text) == text


@given(st.text(alphabet=string.ascii_letters + string.digits + " +-*/=?.,$\\{}()^", min_size=1, max_size=200)
       .filter(str.strip))
def test_ordinary_math_text_is_always_accepted(problem) -> None:
    assert check_problem(problem) == problem.strip()


# --- parsing model replies ---------------------------------------------------------------------------------------


def parse_reply(content: str, parse):
    """What ``acall_json`` does with a reply's content."""
    return parse(json.loads(extract_json(content)))


prose = st.text(alphabet=st.characters(exclude_characters="{}"), max_size=40)


@given(json_values)
def test_parse_difficulty_gives_a_score_in_0_1_or_value_error(data) -> None:
    try:
        d = parse_difficulty(data)
    except ValueError:
        return
    assert isinstance(d, float) and 0.0 <= d <= 1.0


@given(st.floats(min_value=0, max_value=1), prose, prose, st.booleans())
def test_a_difficulty_wrapped_in_prose_or_a_fence_is_read(d, before, after, fenced) -> None:
    body = json.dumps({"difficulty": d})
    content = f"```json\n{body}\n```" if fenced else f"{before}{body}{after}"
    assert parse_reply(content, parse_difficulty) == d


@given(json_values, st.integers(min_value=1, max_value=22), st.booleans())
def test_parse_decomposition_gives_a_bounded_list_of_text_or_value_error(data, limit, final_ask) -> None:
    try:
        subs, fallback = parse_decomposition(data, limit, final_ask=final_ask)
    except ValueError:
        return
    assert 1 <= len(subs) <= limit and all(isinstance(s, str) and s.strip() for s in subs)
    assert (fallback is None) == (len(data["subproblems"]) <= limit)


@given(st.text(max_size=300))
@example('{"difficulty": ' + "[" * 50_000 + "}")
@example('{"subproblems": ["a", ' + "{" * 50_000 + "]}")
def test_any_reply_content_fails_only_in_ways_the_stage_catches(content) -> None:
    for parse in (parse_difficulty, lambda data: parse_decomposition(data, 20, final_ask=True)):
        with contextlib.suppress(CAUGHT_BY_ACALL_JSON):
            parse_reply(content, parse)


@given(st.text(max_size=300))
def test_shallow_reply_content_fails_only_in_ways_the_stage_catches(content) -> None:
    """The same on short replies only (hypothesis explores them more thoroughly without the huge examples)."""
    for parse in (parse_difficulty, lambda data: parse_decomposition(data, 20, final_ask=True)):
        with contextlib.suppress(CAUGHT_BY_ACALL_JSON):
            parse_reply(content, parse)


# --- answer extraction -----------------------------------------------------------------------------------------

plain = st.text(alphabet=st.characters(exclude_characters="{}\\"), max_size=30)
balanced = st.recursive(plain, lambda inner: st.builds(lambda a, b, c: f"{a}{{{b}}}{c}", plain, inner, plain),
                        max_leaves=6)
"""Text whose braces are balanced, with no backslash (so no ``\\boxed`` or escaped brace inside)."""


@given(st.text(max_size=400))
def test_extract_boxed_never_raises_and_returns_stripped_text_or_none(text) -> None:
    found = extract_boxed(text)
    assert found is None or (isinstance(found, str) and found == found.strip())


@given(plain, balanced, plain, st.sampled_from(["\\boxed", "\\fbox"]))
def test_the_last_box_is_extracted_with_its_braces_balanced(before, inner, after, command) -> None:
    assert extract_boxed(f"{before}{command}{{{inner}}}{after}") == inner.strip()
    assert extract_boxed(f"\\boxed{{wrong}} {before}{command}{{{inner}}}{after}") == inner.strip()


# --- run settings ----------------------------------------------------------------------------------------------


def valid_values(rule: FieldRule) -> st.SearchStrategy:
    """Values a field accepts, from its rule."""
    if rule.choices is not None:
        values: st.SearchStrategy = st.sampled_from(rule.choices)
    elif rule.kind is str:
        values = (st.just("http://127.0.0.1:8000/v1") | st.just("https://models.example/v1") if rule.pattern
                  else st.text(alphabet=string.ascii_letters + "-_./:", min_size=1, max_size=20))
    elif rule.kind is bool:
        values = st.booleans()
    else:
        bounds = dict(rule.bounds)
        low = bounds.get("ge", bounds.get("gt", -1e9))
        high = bounds.get("le", bounds.get("lt", 1e9))
        if rule.kind is int:
            values = st.integers(min_value=math.ceil(low) + ("gt" in bounds), max_value=math.floor(high))
        else:
            values = st.floats(min_value=low, max_value=high, exclude_min="gt" in bounds,
                               exclude_max="lt" in bounds, allow_nan=False)
    return values | st.none() if rule.optional else values


RULES = field_rules(Context)
valid_settings = st.fixed_dictionaries({}, optional={name: valid_values(rule) for name, rule in RULES.items()})


@given(valid_settings)
def test_every_setting_the_rules_allow_makes_a_context_that_round_trips(data) -> None:
    ctx = Context.from_mapping(data)
    stored = {k: v for k, v in dataclasses.asdict(ctx).items() if k != "api_key"}
    json.dumps(stored, allow_nan=False)  # storable as JSONB
    assert Context.from_mapping({**stored, "api_key": ctx.api_key}) == ctx
    for name, value in data.items():
        assert getattr(ctx, name) == value


@given(st.dictionaries(st.sampled_from([*RULES, "bogus", "candidate", ""]), json_values, max_size=6))
def test_any_settings_give_a_storable_context_or_invalid_settings(data) -> None:
    try:
        ctx = Context.from_mapping(data)
    except InvalidSettings as exc:
        assert exc.field and exc.reason and str(exc).startswith(exc.field[:20])
        return
    json.dumps(dataclasses.asdict(ctx), allow_nan=False)
    for f in dataclasses.fields(Context):
        RULES[f.name].check(getattr(ctx, f.name))


# --- the server's checks of a request body -----------------------------------------------------------------------


@given(json_values)
def test_the_body_checks_never_raise_and_no_accepted_body_holds_what_postgresql_refuses(data) -> None:
    try:
        text = json.dumps(data)
    except ValueError:
        return
    parsed = parse_json(text)
    caps = {"candidates": (16, "SCALE_SERVER_MAX_CANDIDATES")}
    checks = [non_finite_at(parsed), unstorable_at(parsed), settings_problem(parsed, RULES, caps),
              run_input_problem(parsed)]
    if checks[0] is None and checks[1] is None:  # passed on: PostgreSQL's JSONB must be able to store it
        stored = json.dumps(parsed, allow_nan=False, ensure_ascii=False)
        stored.encode("utf-8")  # no lone surrogate
        assert "\\u0000" not in stored and "\x00" not in stored


@given(st.dictionaries(st.sampled_from(list(RULES)), json_values, max_size=4))
def test_settings_the_guard_accepts_make_a_context(context) -> None:
    body = {"assistant_id": "scale", "input": {"problem": "1+1?"}, "context": context}
    try:
        parsed = parse_json(json.dumps(body))
    except ValueError:
        return
    if non_finite_at(parsed) is None and settings_problem(parsed, RULES, {}) is None:
        Context.from_mapping(parsed["context"])


# --- text shown on a terminal ------------------------------------------------------------------------------------


@given(st.text())
def test_terminal_text_never_carries_a_control_character(text) -> None:
    shown = terminal_text(text)
    assert not any((ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f for c in shown)
    assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@given(st.text(alphabet=st.characters(exclude_categories=["Cc", "Cf", "Cs"]) | st.sampled_from("\n\t")))
def test_terminal_text_leaves_printable_text_alone(text) -> None:
    assert terminal_text(text) == text

"""Run settings are checked in one place (``Context``): types, finite numbers, ranges, known values, no unknown
fields — and the CLI refuses a bad flag with exit 2 before any thread or model request exists."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

import pytest

from scale_graph import solve
from scale_graph.cli import main
from scale_graph.context import MAX_SUBPROBLEMS_LIMIT, Context
from scale_graph.settings import InvalidSettings, check_setting, field_rules, validate_settings
from tests.conftest import fake_context, make_script

# (settings, field named, words of the reason) — every case the adversarial pass found, and their neighbours
BAD = [
    ({"threshold": math.nan}, "threshold", "finite"),
    ({"threshold": math.inf}, "threshold", "finite"),
    ({"threshold": "high"}, "threshold", "must be a number"),
    ({"threshold": 10**400}, "threshold", "finite"),
    ({"candidates": 0}, "candidates", "≥ 1"),
    ({"candidates": -5}, "candidates", "≥ 1"),
    ({"candidates": "2"}, "candidates", "integer"),
    ({"candidates": 2.5}, "candidates", "integer"),
    ({"candidates": True}, "candidates", "integer"),
    ({"assess": "bogus"}, "assess", "one of 'upfront', 'contextual'"),
    ({"preset": "gpt"}, "preset", "one of"),
    ({"final_step": 1}, "final_step", "one of"),
    ({"max_tokens_per_problem": -1}, "max_tokens_per_problem", "≥ 1"),
    ({"max_seconds_per_problem": math.nan}, "max_seconds_per_problem", "finite"),
    ({"max_seconds_per_problem": 0}, "max_seconds_per_problem", "> 0"),
    ({"request_timeout": -1}, "request_timeout", "> 0"),
    ({"request_timeout": None}, "request_timeout", "cannot be null"),
    ({"temperature": math.nan}, "temperature", "finite"),
    ({"temperature": -0.1}, "temperature", "≥ 0"),
    ({"top_p": 0}, "top_p", "> 0"),
    ({"top_p": 1.5}, "top_p", "≤ 1"),
    ({"max_subproblems": 2000}, "max_subproblems", f"≤ {MAX_SUBPROBLEMS_LIMIT}"),
    ({"content_retries": -1}, "content_retries", "≥ 0"),
    ({"base_url": "ftp://x"}, "base_url", "http(s) URL"),
    ({"base_url": "http://user:pw@host/v1"}, "base_url", "http(s) URL"),
    ({"model": ""}, "model", "empty"),
    ({"model": "m\x1b[2J"}, "model", "control character"),
    ({"bogus": 1}, "bogus", "unknown setting"),
    ({"candidate": 2}, "candidate", "did you mean 'candidates'"),
]


@pytest.mark.parametrize(("settings", "name", "says"), BAD, ids=[f"{n}={s[n]!r}"[:40] for s, n, _ in BAD])
def test_bad_settings_are_refused_naming_the_field_and_the_reason(settings, name, says) -> None:
    with pytest.raises(InvalidSettings) as caught:
        Context.from_mapping(settings)
    assert caught.value.field == name and says in caught.value.reason, str(caught.value)
    assert str(caught.value).startswith(f"{name}: ")
    if name in {f.name for f in fields(Context)}:  # made directly, a Context checks itself too
        with pytest.raises(InvalidSettings):
            Context(**settings)


@pytest.mark.parametrize("settings", [
    {}, {"threshold": -1}, {"threshold": 1}, {"threshold": 5.5}, {"candidates": 1}, {"assess": "contextual"},
    {"preset": "auto"}, {"final_step": "decomposed"}, {"top_k": 20}, {"max_model_len": 40960},
    {"max_subproblems": MAX_SUBPROBLEMS_LIMIT}, {"content_retries": 0}, {"temperature": 0}, {"top_p": 1},
    {"max_seconds_per_problem": 0.5}, {"base_url": "http://127.0.0.1:8000/v1"}, {"base_url": None},
    {"base_url": "https://host.example"},
])
def test_good_settings_pass(settings) -> None:
    ctx = Context.from_mapping(settings)
    for name, value in settings.items():
        assert getattr(ctx, name) == value


def test_whole_numbers_become_floats_and_the_result_is_plain_json() -> None:
    ctx = Context.from_mapping({"threshold": 1, "request_timeout": 30, "max_seconds_per_problem": 5})
    assert type(ctx.threshold) is float and type(ctx.request_timeout) is float
    assert type(ctx.max_seconds_per_problem) is float
    assert validate_settings({"threshold": 0}, Context) == {"threshold": 0.0}
    json.dumps(vars(ctx), allow_nan=False)  # nothing PostgreSQL's JSONB would refuse


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidSettings, match="context: must be an object"):
        validate_settings(["threshold", 0.2], Context)  # type: ignore[arg-type]


def test_every_field_has_a_rule_and_its_range_shows_in_the_schema() -> None:
    from scale_graph.graph.scale import graph

    rules = field_rules(Context)
    assert set(rules) == {f.name for f in fields(Context)}
    schema = graph.get_context_jsonschema()
    assert schema["properties"]["candidates"]["minimum"] == 1
    assert schema["properties"]["max_subproblems"]["maximum"] == MAX_SUBPROBLEMS_LIMIT


def test_a_subclass_that_adds_fields_is_checked_the_same_way() -> None:
    @dataclass(kw_only=True)
    class Baseline(Context):
        votes: int = field(default=3, metadata={"description": "votes", "ge": 1})
        mode: str | None = field(default=None, metadata={"description": "a mode"})

    assert Baseline.from_mapping({"votes": 5, "candidates": 2}).votes == 5
    with pytest.raises(InvalidSettings, match="votes: must be ≥ 1"):
        Baseline.from_mapping({"votes": 0})
    with pytest.raises(InvalidSettings, match="votes: must be an integer"):
        Baseline(votes="5")  # type: ignore[arg-type]
    with pytest.raises(InvalidSettings, match="candidates"):
        Baseline.from_mapping({"candidates": 0})
    with pytest.raises(InvalidSettings, match="unknown setting"):
        Context.from_mapping({"votes": 5})  # the base class does not know the subclass's field
    assert check_setting("votes", 4, Baseline) == 4


def test_the_environment_fills_unset_fields_and_is_checked_too(monkeypatch) -> None:
    monkeypatch.setenv("SCALE_BASE_URL", "not a url")
    with pytest.raises(InvalidSettings, match="base_url"):
        Context()


def test_the_largest_decomposition_allowed_fits_the_recursion_limit(fake_models) -> None:
    """MAX_SUBPROBLEMS_LIMIT sub-problems, each assessed in the loop (the longest way): the run finishes."""
    subs = [f"Step {i}: add {i}." for i in range(1, MAX_SUBPROBLEMS_LIMIT + 1)]
    fake_models(make_script(subproblems=subs))
    result = solve("Add 1 to 30.", context=fake_context(assess="contextual", candidates=1,
                                                          max_subproblems=MAX_SUBPROBLEMS_LIMIT))
    assert len(result.steps) == MAX_SUBPROBLEMS_LIMIT and result.status == "completed"


# --- the CLI: exit 2 before any thread exists ------------------------------------------------------------------

CLI_BAD = [
    (["--threshold", "nan"], "threshold: must be a finite number"),
    (["--threshold", "inf"], "threshold: must be a finite number"),
    (["--candidates", "0"], "candidates: must be ≥ 1"),
    (["--candidates", "-5"], "candidates: must be ≥ 1"),
    (["--max-tokens-per-problem", "-1"], "max_tokens_per_problem: must be ≥ 1"),
    (["--max-seconds-per-problem", "nan"], "max_seconds_per_problem: must be a finite number"),
    (["--request-timeout", "-1"], "request_timeout: must be > 0"),
    (["--temperature", "nan"], "temperature: must be a finite number"),
    (["--top-p", "2"], "top_p: must be ≤ 1"),
    (["--max-subproblems", "2000"], "max_subproblems: must be ≤"),
    (["--base-url", "file:///etc/passwd"], "base_url: must be an http(s) URL"),
    (["--candidates", "two"], "invalid int value: 'two'"),
]


@pytest.mark.parametrize(("flags", "says"), CLI_BAD, ids=[" ".join(f) for f, _ in CLI_BAD])
@pytest.mark.parametrize("command", ["solve", "resume", "replay", "fork"])
def test_cli_refuses_bad_settings_with_exit_2_and_no_thread(command, flags, says, capsys, fake_models) -> None:
    fakes = fake_models(make_script())
    argv = {"solve": ["solve", *flags, "What is 2 + 2?"], "resume": ["resume", "t1", *flags],
            "replay": ["replay", "t1", "--checkpoint", "c", *flags],
            "fork": ["fork", "t1", "--checkpoint", "c", *flags]}
    with pytest.raises(SystemExit) as exited:
        main(argv[command])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err
    assert fakes.calls == []
    assert main(["threads", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []  # no thread was made


def test_cli_refuses_a_bad_environment_setting_with_exit_2_and_no_thread(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCALE_BASE_URL", "127.0.0.1:8000")  # no scheme
    assert main(["solve", "What is 2 + 2?"]) == 2
    assert "base_url: must be an http(s) URL" in capsys.readouterr().err
    assert main(["threads", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


def test_one_more_than_the_limit_would_still_fit_so_the_limit_keeps_a_spare(fake_models) -> None:
    """The limit keeps one sub-problem spare below where the recursion limit is hit, so a superstep more per run
    does not break the largest allowed setting. If this fails, the spare is used up: lower MAX_SUBPROBLEMS_LIMIT."""
    n = MAX_SUBPROBLEMS_LIMIT + 1
    subs = [f"Step {i}: add {i}." for i in range(1, n + 1)]
    fake_models(make_script(subproblems=subs))
    ctx = fake_context(assess="contextual", candidates=1)
    ctx.max_subproblems = n  # past the check on purpose
    assert len(solve("Add 1 to 23.", context=ctx).steps) == n

"""SCALE end to end on the real embedded model: structure, not cleverness (a 0.5B model is often wrong)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from scale_graph import solve
from scale_graph.context import Context
from scale_graph.models import build_profiles, call_model, messages_for
from scale_graph.nodes.route import select_mode
from scale_graph.nodes.solve import solve_prompt

pytestmark = pytest.mark.integration


def gsm8k(n: int) -> list[dict]:
    text = resources.files("scale_graph").joinpath("data/gsm8k_dev.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[:n]]


def test_three_gsm8k_problems(embedded_server) -> None:
    ctx = Context(base_url=embedded_server.base_url, candidates=2, system1_max_tokens=192,
                  system2_max_tokens=384, control_max_tokens=192, request_timeout=180)
    for row in gsm8k(3):
        events: list[dict] = []
        result = solve(row["problem"], context=ctx, problem_id=row["id"], on_event=events.append)
        assert 1 <= len(result.steps) <= ctx.max_subproblems
        assert [s["index"] for s in result.steps] == list(range(len(result.subproblems)))
        for step in result.steps:
            assert 0.0 <= step["difficulty"] <= 1.0
            assert step["mode"] == select_mode(step["difficulty"], ctx.threshold)
            assert step["completion_tokens"] > 0 and step["prompt_tokens"] > 0
            assert step["latency"] > 0
        assert (result.answer is not None) != (result.answer_fallback is not None)
        assert result.usage["decompose"]["calls"] >= 2
        assert result.usage["solve"]["calls"] == len(result.steps)
        # the live events a UI renders arrive for every stage
        kinds = [e["event"] for e in events]
        assert kinds.count("candidate") == 2 and kinds.count("solved") == len(result.steps)
        assert kinds[-1] == "answer"


def test_consecutive_solve_prompts_hit_the_prefix_cache(embedded_server) -> None:
    """Eq. 5 prompts grow by appending; the server serves the shared prefix from its cache, and we count it."""
    profile = build_profiles(Context(system1_max_tokens=16), embedded_server.base_url, "local").system1
    problem = gsm8k(1)[0]["problem"]
    subs = ["How many clips in April?", "How many clips in May?", "How many altogether?"]
    first = solve_prompt(problem, subs, [], "system2")
    step = {"index": 0, "subproblem": subs[0], "solution": "48 clips. \\boxed{48}"}
    second = solve_prompt(problem, subs, [step], "system1")  # type: ignore[list-item]  # a mode switch
    assert second.startswith(first.split("\nCurrent sub-problem")[0])
    call_model(profile, messages_for(profile, None, first))
    reply = call_model(profile, messages_for(profile, None, second))
    shared_chars = len(first.split("\nCurrent sub-problem")[0])
    assert reply.cached_tokens > 0.5 * shared_chars / 4  # most of the shared prefix (~4 chars a token) was cached
    assert reply.cached_tokens <= reply.prompt_tokens

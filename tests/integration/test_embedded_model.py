"""SCALE end to end on the real embedded model: structure, not cleverness (a 0.5B model is often wrong)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from scale_graph import solve
from scale_graph.context import Context
from scale_graph.models import build_profiles, messages_for
from scale_graph.models.endpoint import count_prompt_tokens, upper_bound_tokens
from scale_graph.nodes.route import select_mode
from scale_graph.nodes.solve import solve_messages
from scale_graph.testing import call_once

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
    """Each Eq. 5 request extends the previous one and its reply; the slot serves all that from its cache."""
    profiles = build_profiles(Context(system1_max_tokens=24, system2_max_tokens=24), embedded_server.base_url,
                              "local")
    problem = gsm8k(1)[0]["problem"]
    subs = ["How many clips in April?", "How many clips in May?", "How many altogether?"]
    first = call_once(profiles.system2, solve_messages(profiles, problem, subs, [], "system2"))
    step = {"index": 0, "subproblem": subs[0], "mode": "system2", "solution": first.content}
    second = call_once(profiles.system1,  # a mode switch
                        solve_messages(profiles, problem, subs, [step], "system1"))  # type: ignore[list-item]
    # the whole first prompt and (nearly) the reply as generated: only the new turn's tokens are computed
    assert second.cached_tokens >= first.prompt_tokens + first.completion_tokens - 2, (first, second)
    assert second.cached_tokens <= second.prompt_tokens


def test_prompt_tokens_are_counted_with_the_servers_tokenizer(embedded_server) -> None:
    """llama.cpp's /tokenize counts the text; the count (plus the template allowance) covers what the chat
    endpoint reports for the same messages, and the budget is shrunk to fit one slot's context."""
    profiles = build_profiles(Context(system2_max_tokens=24), embedded_server.base_url, "local",
                              max_model_len=embedded_server.settings.ctx_per_slot)
    messages = messages_for(profiles.system2, None, "Count the words: " + " ".join(["apple"] * 300))
    counted = count_prompt_tokens(embedded_server.base_url, "local", messages)
    reply = call_once(profiles.system2, messages)
    assert reply.prompt_tokens <= counted < upper_bound_tokens(messages)
    big = build_profiles(Context(system2_max_tokens=32768), embedded_server.base_url, "local",
                         max_model_len=embedded_server.settings.ctx_per_slot).system2
    capped = call_once(big, messages)
    assert capped.capped_to is not None and counted + capped.capped_to <= embedded_server.settings.ctx_per_slot

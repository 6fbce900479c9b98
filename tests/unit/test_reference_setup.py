"""The paper's setup as its authors' code ran it, against a fake of vLLM serving Qwen3-32B.

What is asserted is what vLLM would receive: the preset chosen from the served model, per-mode sampling and the
thinking switch, the final step (the original question, solved by System 2), and completion budgets that fit the
context (counted with the server's /tokenize) — so that no request is ever refused for its length.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from scale_graph import Context, solve
from scale_graph.cli import main
from scale_graph.models import CONTEXT_FULL, build_profiles, messages_for
from scale_graph.nodes.assess import FINAL_DIFFICULTY, FORCED_FINAL
from scale_graph.testing import (
    FakeOpenAIServer,
    FakeVLLMServer,
    Reply,
    call_once,
    prompt_token_ids,
    scale_script,
    stage_of,
)

PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"


def vllm_context(server: FakeVLLMServer, **overrides: Any) -> Context:
    return Context(**{"base_url": server.base_url, "candidates": 2, **overrides})


def requested(body: dict[str, Any]) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens"))


_plans_sent: list[str] = []


def two_plans(body: dict[str, Any]) -> Reply:
    """Two distinct decompositions (so the model is asked to select one), otherwise the default script."""
    if stage_of(body) == "decompose":
        ending = "Find the second." if len(_plans_sent) % 2 else "Combine."
        _plans_sent.append(ending)
        return Reply(content=json.dumps({"subproblems": ["Find the first quantity.", ending]}))
    return scale_script(body)


def test_auto_picks_qwen3_hybrid_and_sends_the_reference_sampling_per_mode() -> None:
    with FakeVLLMServer(two_plans) as server:
        result = solve(PROBLEM, context=vllm_context(server))
    assert result.preset == "qwen3-hybrid"
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for body in server.requests:
        by_stage.setdefault(stage_of(body), []).append(body)
    assert set(by_stage) >= {"decompose", "select", "assess", "system1", "system2"}
    thinking = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "chat_template_kwargs": {"enable_thinking": True}}
    plain = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}
    for stage, bodies in by_stage.items():
        expected = thinking if stage == "system2" else plain
        for body in bodies:
            assert {k: body.get(k) for k in expected} == expected, stage
    # System 2's thinking is kept on the step, apart from its answer.
    deep = [s for s in result.steps if s["mode"] == "system2"]
    assert deep and all(s["reasoning"] for s in deep)


def test_system1_is_the_same_model_thinking_off_asked_to_reason_step_by_step() -> None:
    with FakeVLLMServer() as server:
        result = solve(PROBLEM, context=vllm_context(server))
    assert [s["mode"] for s in result.steps] == ["system1", "system2"]
    solves = [b for b in server.requests if stage_of(b) in {"system1", "system2"}]
    first, last = solves[0]["messages"][-1]["content"], solves[1]["messages"][-1]["content"]
    # One instruction for both modes (the reference sends one solve prompt); only the thinking switch differs.
    assert first.rsplit("\n\n", 1)[-1] == last.rsplit("\n\n", 1)[-1]
    assert "step by step" in first.rsplit("\n\n", 1)[-1]
    assert solves[0]["chat_template_kwargs"] == {"enable_thinking": False}
    assert solves[1]["chat_template_kwargs"] == {"enable_thinking": True}


def test_explicit_sampling_wins_over_the_preset() -> None:
    with FakeVLLMServer() as server:
        solve(PROBLEM, context=vllm_context(server, temperature=0.3, top_p=0.5, top_k=5))
    assert {(b["temperature"], b["top_p"], b["top_k"]) for b in server.requests} == {(0.3, 0.5, 5)}


def test_a_model_without_a_thinking_switch_gets_prompted() -> None:
    with FakeOpenAIServer(scale_script, model="Qwen/Qwen2.5-7B-Instruct") as server:
        result = solve(PROBLEM, context=Context(base_url=server.base_url, candidates=2))
    assert result.preset == "prompted"
    for body in server.requests:
        assert "chat_template_kwargs" not in body and "top_k" not in body
        assert (body["temperature"], body["top_p"]) == (0.6, 0.95)


def test_the_last_step_is_the_original_question_solved_by_system2_with_its_assessed_d_kept() -> None:
    with FakeVLLMServer() as server:
        result = solve(PROBLEM, context=vllm_context(server))
    assert result.subproblems[-1] == PROBLEM
    assert result.subproblems[0] == "Find the first quantity."  # the decomposition's own steps stay
    last = result.steps[-1]
    assert last["difficulty"] == FINAL_DIFFICULTY and last["forced"] == FORCED_FINAL
    assert last["assessed_difficulty"] == 0.1  # what the fake model scored the question
    assert last["mode"] == "system2"
    assert result.steps[0]["forced"] is None and result.steps[0]["assessed_difficulty"] == 0.1
    # The question is asked with every earlier (sub-problem, solution) pair in its context (Eq. 5).
    final_request = [b for b in server.requests if stage_of(b) == "system2"][-1]
    assert [m["role"] for m in final_request["messages"]] == ["system", "user", "assistant", "user"]
    assert final_request["messages"][2]["content"] == result.steps[0]["solution"]
    assert result.hard_share == 0.5  # the forced step counts as System 2 (Hard%), as in the paper


@pytest.mark.parametrize(("threshold", "last_mode"), [(0.2, "system2"), (0.89, "system2"), (0.9, "system1")])
def test_the_forced_d_routes_by_eq4_like_any_other(threshold: float, last_mode: str) -> None:
    with FakeVLLMServer() as server:
        result = solve(PROBLEM, context=vllm_context(server, threshold=threshold))
    assert result.steps[-1]["mode"] == last_mode


def test_final_step_decomposed_keeps_the_decompositions_last_step_and_its_d() -> None:
    with FakeVLLMServer() as server:
        result = solve(PROBLEM, context=vllm_context(server, final_step="decomposed"))
    assert result.subproblems[-1].startswith("Combine the quantities")
    assert result.steps[-1]["forced"] is None and result.steps[-1]["difficulty"] == 0.9  # scored by the model


def test_32k_budgets_are_shrunk_to_fit_the_context_and_no_request_overflows() -> None:
    with FakeVLLMServer(max_model_len=1200) as server:
        result = solve(PROBLEM, context=vllm_context(server, system1_max_tokens=32768, system2_max_tokens=32768,
                                                     control_max_tokens=32768))
    assert result.answer is not None
    for body in server.requests:
        prompt = len(prompt_token_ids(body))
        assert prompt + requested(body) <= 1200 - 50, stage_of(body)  # the reference's 50-token margin
    assert server.tokenize_requests, "prompts were counted with the server's /tokenize"
    # The count used the same chat-template switch as the request (Qwen3's template differs by it).
    assert {json.dumps(t.get("chat_template_kwargs"), sort_keys=True) for t in server.tokenize_requests} == {
        '{"enable_thinking": false}', '{"enable_thinking": true}'}
    assert all("budget_capped→" in (s["fallback"] or "") for s in result.steps)


def test_max_model_len_setting_overrides_the_endpoint() -> None:
    with FakeVLLMServer(max_model_len=40960) as server:
        solve(PROBLEM, context=vllm_context(server, system2_max_tokens=32768, max_model_len=2000))
    deep = [b for b in server.requests if stage_of(b) == "system2"]
    assert deep and all(len(prompt_token_ids(b)) + requested(b) <= 2000 - 50 for b in deep)


def test_a_request_with_no_room_is_not_sent_and_the_step_records_it() -> None:
    def script(body: dict[str, Any]) -> Reply:
        if stage_of(body) == "system1":  # a long first solution fills the context
            return Reply(content=" ".join(["word"] * 600) + " \\boxed{1}")
        return scale_script(body)

    with FakeVLLMServer(script, max_model_len=700) as server:
        result = solve(PROBLEM, context=vllm_context(server, candidates=1))
        sent_after = len(server.requests)
    first, last = result.steps
    assert first["fallback"] is None and first["finish_reason"] == "length"  # its own budget fitted, and cut it
    assert last["finish_reason"] == CONTEXT_FULL and last["solution"] == ""
    assert CONTEXT_FULL in (last["fallback"] or "")
    assert result.answer is None and result.answer_fallback == "no_boxed_answer"
    assert stage_of(server.requests[-1]) != "system2"  # the final solve was never sent
    assert sent_after == len(server.requests)


def test_call_model_does_not_send_what_cannot_fit() -> None:
    with FakeVLLMServer(max_model_len=100) as server:
        ctx = Context(base_url=server.base_url)
        profile = build_profiles(ctx, server.base_url, server.model, max_model_len=100).system2
        reply = call_once(profile, messages_for(profile, None, " ".join(["long"] * 200)))
    assert not reply.sent and reply.finish_reason == CONTEXT_FULL and reply.usage()["calls"] == 0
    assert server.requests == []


def test_a_long_decomposition_is_shortened_with_a_recorded_fallback() -> None:
    steps = [f"Find quantity {i}." for i in range(1, 31)]

    def script(body: dict[str, Any]) -> Reply:
        if stage_of(body) == "decompose":
            return Reply(content=json.dumps({"subproblems": steps}))
        return scale_script(body)

    with FakeVLLMServer(script) as server:
        result = solve(PROBLEM, context=vllm_context(server, candidates=1, max_subproblems=5))
    assert result.subproblems == [*steps[:4], PROBLEM]


def test_cli_solve_picks_the_preset_and_ends_with_the_question(capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance command: scale solve --json --base-url <fake vLLM> --system2-max-tokens 32768 …"""
    with FakeVLLMServer() as server:
        code = main(["solve", "--json", "--quiet", "--base-url", server.base_url, "--system2-max-tokens", "32768",
                     "--candidates", "2", PROBLEM])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "qwen3-hybrid"
    assert out["subproblems"][-1] == PROBLEM and out["steps"][-1]["mode"] == "system2"
    assert all(len(prompt_token_ids(b)) + requested(b) <= server.max_model_len for b in server.requests)

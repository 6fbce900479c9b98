"""The SCALE pipeline on the scripted fake model: fan-out, selection, Eq. 5 context, fallbacks, policies, usage."""

from __future__ import annotations

import itertools
import json

import pytest

from scale_graph import prompts, solve
from scale_graph.models import EndpointError
from scale_graph.nodes.assess import DIFFICULTY_FALLBACK
from scale_graph.nodes.finalize import NO_BOXED_ANSWER
from scale_graph.nodes.select import NO_VALID_DECOMPOSITION, SELECTION_UNPARSED
from scale_graph.testing import Reply, stage_of
from tests.conftest import SUBPROBLEMS, current_subproblem, fake_context, make_script

PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"


def solve_calls(fakes):
    return [c for c in fakes.calls if stage_of(c) in ("system1", "system2")]


def test_fan_out_requests_k_candidates(fake_models) -> None:
    fakes = fake_models(make_script())
    solve(PROBLEM, context=fake_context(candidates=5))
    decompose_calls = [s for s in fakes.stages() if s == "decompose"]
    assert len(decompose_calls) == 5
    # every candidate asked for JSON through response_format
    first = next(c for c in fakes.calls if "response_format" in c)
    assert first["response_format"]["type"] == "json_schema"


def test_context_follows_eq5(fake_models) -> None:
    fakes = fake_models(make_script())
    result = solve(PROBLEM, context=fake_context(final_step="decomposed"))
    calls = solve_calls(fakes)
    assert len(calls) == 3
    for i, call in enumerate(calls):
        messages = call["messages"]
        # C_i = P + every earlier (s_j, solution_j) in order, then s_i: one exchange per earlier sub-problem
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * i + ["user"]
        assert messages[1]["content"].startswith(f"Original problem:\n{PROBLEM}\n")  # C_1 = P
        for j in range(i):
            assert f"sub-problem {j + 1}: {SUBPROBLEMS[j]}" in messages[1 + 2 * j]["content"]
            assert messages[2 + 2 * j]["content"] == result.steps[j]["solution"]
        assert current_subproblem(call) == SUBPROBLEMS[i]
        assert PROBLEM not in "".join(m["content"] for m in messages[2:])  # P is stated once
    assert "the last one" in calls[-1]["messages"][-1]["content"]
    assert "the last one" not in calls[0]["messages"][-1]["content"]
    assert_each_request_extends_the_previous(calls, result.steps)


def assert_each_request_extends_the_previous(calls, steps) -> None:
    """Request i+1 = request i + the model's reply, verbatim + one user turn: what a prefix cache holds."""
    for prev, nxt, step in zip(calls, calls[1:], steps, strict=False):
        n = len(prev["messages"])
        assert nxt["messages"][:n] == prev["messages"]
        assert nxt["messages"][n] == {"role": "assistant", "content": step["solution"]}
        assert [m["role"] for m in nxt["messages"][n + 1:]] == ["user"]


def test_answer_comes_from_last_step_and_usage_sums(fake_models) -> None:
    fake_models(make_script())
    result = solve(PROBLEM, context=fake_context())
    assert result.answer == "30"
    assert result.answer_fallback is None
    assert [s["index"] for s in result.steps] == [0, 1, 2]
    assert result.usage["solve"]["calls"] == 3
    assert result.usage["assess"]["calls"] == 3
    assert result.usage["decompose"]["calls"] == 2
    assert result.usage["solve"]["completion_tokens"] == sum(s["completion_tokens"] for s in result.steps) > 0


def test_distinct_candidates_are_selected_by_the_model(fake_models) -> None:
    variants = iter([["x?", "Give the final answer."], ["y?", "z?", "Give the final answer."]])
    fakes = fake_models(make_script(
        subproblems=["x?", "y?", "z?", "Give the final answer."],
        decomposition=lambda body: json.dumps({"subproblems": next(variants)}),
        choice='{"choice": 2}',
    ))
    result = solve(PROBLEM, context=fake_context(final_step="decomposed", candidates=2))
    assert fakes.stages().count("select") == 1
    assert result.subproblems in (["y?", "z?", "Give the final answer."], ["x?", "Give the final answer."])
    assert result.selection_fallback is None


def test_unusable_selection_falls_back_to_first_valid(fake_models) -> None:
    variants = iter([["x?", "Give the final answer."], ["y?", "Give the final answer."]])
    fakes = fake_models(make_script(
        subproblems=["x?", "y?", "Give the final answer."],
        decomposition=lambda body: json.dumps({"subproblems": next(variants)}),
        choice='{"choice": 7}',
    ))
    result = solve(PROBLEM, context=fake_context(final_step="decomposed", candidates=2, content_retries=1))
    assert fakes.stages().count("select") == 2  # 1 try + 1 bounded retry
    assert result.selection_fallback == SELECTION_UNPARSED
    assert len(result.subproblems) == 2


@pytest.mark.parametrize("reply", ["not json at all", '{"subproblems": []}', '{"steps": ["a"]}',
                                   '{"subproblems": ["", "b"]}', '{"subproblems": "a, b"}'])
def test_no_valid_decomposition_falls_back_to_whole_problem(fake_models, reply) -> None:
    fakes = fake_models(make_script(subproblems=[PROBLEM], decomposition=lambda body: reply))
    result = solve(PROBLEM, context=fake_context(candidates=3, content_retries=1))
    assert fakes.stages().count("decompose") == 3 * 2  # each candidate: 1 try + 1 retry, then dropped
    assert result.decomposition_fallback == NO_VALID_DECOMPOSITION
    assert result.subproblems == [PROBLEM]
    assert "select" not in fakes.stages()
    assert len(result.steps) == 1


def test_last_subproblem_is_made_to_ask_for_the_final_answer(fake_models) -> None:
    fake_models(make_script(
        subproblems=["How many in April?", "How many in May?" + prompts.FINAL_ASK],
        decomposition=lambda body: '{"subproblems": ["How many in April?", "How many in May?"]}',
    ))
    result = solve(PROBLEM, context=fake_context(final_step="decomposed", candidates=1))
    assert result.subproblems == ["How many in April?", "How many in May?" + prompts.FINAL_ASK]


@pytest.mark.parametrize("raw", ['{"difficulty": "hard"}', '{"difficulty": 7}', '{"difficulty": -1}',
                                 "difficulty: low", '{"difficulty": true}', '{"level": 0.3}'])
def test_unusable_difficulty_routes_to_system2_and_is_recorded(fake_models, raw) -> None:
    scores = {SUBPROBLEMS[0]: raw, SUBPROBLEMS[1]: '{"difficulty": 0.1}', SUBPROBLEMS[2]: '{"difficulty": 0.1}'}
    fakes = fake_models(make_script(difficulty=scores))
    result = solve(PROBLEM, context=fake_context(final_step="decomposed", content_retries=2))
    first = result.steps[0]
    assert first["difficulty"] == 1.0
    assert first["fallback"] == DIFFICULTY_FALLBACK
    assert first["mode"] == "system2"
    assert [s["mode"] for s in result.steps[1:]] == ["system1", "system1"]
    assert fakes.stages().count("assess") == 3 + 2  # the bad one: 1 try + 2 retries


def test_difficulty_as_numeric_string_is_accepted(fake_models) -> None:
    scores = {s: '{"difficulty": "0.7"}' for s in SUBPROBLEMS}
    fake_models(make_script(difficulty=scores))
    result = solve(PROBLEM, context=fake_context(final_step="decomposed"))
    assert [s["difficulty"] for s in result.steps] == [0.7, 0.7, 0.7]
    assert all(s["fallback"] is None for s in result.steps)


def test_no_boxed_answer_is_recorded(fake_models) -> None:
    fake_models(make_script(solution=lambda sub, body: "I think it is 72."))
    result = solve(PROBLEM, context=fake_context())
    assert result.answer is None
    assert result.answer_fallback == NO_BOXED_ANSWER
    assert len(result.steps) == 3


def test_contextual_policy_scores_each_step_with_earlier_solutions(fake_models) -> None:
    fakes = fake_models(make_script())
    result = solve(PROBLEM, context=fake_context(assess="contextual", candidates=1))
    assert fakes.stages() == ["decompose", "assess", "system2", "assess", "system2", "assess", "system2"]
    assess_prompts = [c["messages"][-1]["content"] for c in fakes.calls if stage_of(c) == "assess"]
    assert "Solution" not in assess_prompts[0]
    assert f"Solution: {result.steps[0]['solution']}" in assess_prompts[1]
    assert f"Solution: {result.steps[1]['solution']}" in assess_prompts[2]


def test_upfront_policy_scores_from_subproblem_texts_only(fake_models) -> None:
    fakes = fake_models(make_script())
    solve(PROBLEM, context=fake_context(candidates=1))
    assert fakes.stages()[:4] == ["decompose", "assess", "assess", "assess"]
    assess_prompts = sorted(c["messages"][-1]["content"] for c in fakes.calls if stage_of(c) == "assess")
    assert all("Solution" not in p for p in assess_prompts)
    assert any(f"Earlier sub-problems:\n1. {SUBPROBLEMS[0]}\n2. {SUBPROBLEMS[1]}" in p for p in assess_prompts)


def test_budgets_and_sampling_reach_the_request(fake_models) -> None:
    fakes = fake_models(make_script())
    solve(PROBLEM, context=fake_context(system1_max_tokens=77, system2_max_tokens=999, control_max_tokens=55,
                                        temperature=0.6, top_p=0.95, threshold=0.4))
    by_stage = {stage_of(c): c for c in fakes.calls}
    assert by_stage["system2"]["max_completion_tokens"] == 999
    threshold_one = fake_models(make_script())
    solve(PROBLEM, context=fake_context(system1_max_tokens=77, threshold=1.0))
    assert {c["max_completion_tokens"] for c in solve_calls(threshold_one)} == {77}
    assert by_stage["decompose"]["max_completion_tokens"] == 55
    assert all(c["temperature"] == 0.6 and c["top_p"] == 0.95 for c in fakes.calls)


def test_transport_fault_is_retried_by_the_node_policy(fake_models) -> None:
    state = {"failed": False}
    base = make_script()

    def flaky(body):
        if stage_of(body) == "system1" and not state["failed"]:
            state["failed"] = True
            return Reply(status=503)
        return base(body)

    fakes = fake_models(flaky)
    result = solve(PROBLEM, context=fake_context(threshold=1.0))
    assert result.answer == "30"
    assert state["failed"]
    assert len(solve_calls(fakes)) == 4  # one retried
    assert result.usage["solve"]["calls"] == 3  # usage counts replies, not failed attempts


def test_permanent_client_error_stops_the_run_with_the_url(fake_models) -> None:
    base = make_script()
    fakes = fake_models(lambda body: Reply(status=400) if stage_of(body) == "system2" else base(body))
    with pytest.raises(EndpointError, match=r"fake\.invalid.*HTTP 400"):
        solve(PROBLEM, context=fake_context(threshold=-1))
    assert len(solve_calls(fakes)) == 1  # 400 is not retryable


def test_solve_prompts_share_their_prefix_across_modes(fake_models) -> None:
    """Switching mode between steps must not break the cached prefix: the instruction ends its own turn."""
    scores = dict(zip(SUBPROBLEMS, ['{"difficulty": 0.9}', '{"difficulty": 0.0}', '{"difficulty": 0.9}'],
                      strict=True))
    fakes = fake_models(make_script(difficulty=scores))
    result = solve(PROBLEM, context=fake_context())
    calls = solve_calls(fakes)
    assert [stage_of(c) for c in calls] == ["system2", "system1", "system2"]
    assert len({c["messages"][0]["content"] for c in calls}) == 1  # one system prompt for both modes
    assert_each_request_extends_the_previous(calls, result.steps)
    turns = [m["content"] for m in calls[-1]["messages"] if m["role"] == "user"]
    assert [t.endswith(prompts.SOLVE_DEEP) for t in turns] == [True, False, True]  # earlier turns kept as sent
    assert turns[1].endswith(prompts.SOLVE_FAST)


def test_every_stage_shares_the_system_prompt_and_problem_prefix(fake_models) -> None:
    """Decompose, select, assess and solve requests all open with the same system prompt and P, so after the
    first request of a problem a prefix cache serves that part to every later one, whatever the stage."""
    counter = itertools.count()  # two different valid candidates, so the select stage runs too
    fakes = fake_models(make_script(decomposition=lambda body: json.dumps(
        {"subproblems": SUBPROBLEMS[next(counter) % 2:]})))
    solve(PROBLEM, context=fake_context(candidates=4))
    stages = {stage_of(c) for c in fakes.calls}
    assert {"decompose", "select", "assess"} <= stages and stages & {"system1", "system2"}
    head = prompts.PROBLEM.format(problem=PROBLEM)
    for call in fakes.calls:
        assert call["messages"][0] == {"role": "system", "content": prompts.SCALE_SYSTEM}
        assert call["messages"][1]["role"] == "user" and call["messages"][1]["content"].startswith(head)


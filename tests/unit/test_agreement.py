"""The agreement assessor (``assess="agreement"``): d from how much m System 1 samples disagree, sampled
concurrently with the Eq. 5 context in the solve loop; a step routed to System 1 reuses the modal sample."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from scale_graph import prompts, solve
from scale_graph.api import run_config
from scale_graph.cli import main
from scale_graph.context import Context
from scale_graph.eval.calibrate import CALIBRATION_FILE, OUT_SUBDIR, Calibration, run_calibration
from scale_graph.eval.datasets import load_dataset
from scale_graph.eval.methods import get_method
from scale_graph.eval.results import read_rows
from scale_graph.eval.runner import EvalRun, run_eval
from scale_graph.graph.scale import compile_scale_graph
from scale_graph.nodes.assess import NO_AGREEMENT_ANSWER, agreement_difficulty, answer_key
from scale_graph.settings import InvalidSettings
from scale_graph.testing import FakeOpenAIServer, Reply, current_subproblem, stage_of
from tests.conftest import SUBPROBLEMS, fake_context, make_script

PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"


def varying(answers: dict[str, list[str]], system2: str = "99"):
    """Solutions: each System 1 request about sub-problem s answers the next of ``answers[s]`` (cycling); System 2
    always ``system2``."""
    cycles = {sub: itertools.cycle(values) for sub, values in answers.items()}
    lock = threading.Lock()

    def solution(sub: str, body: dict) -> str:
        if stage_of(body) == "system2":
            return f"Carefully: \\boxed{{{system2}}}"
        with lock:
            value = next(cycles[sub])
        return f"Quickly: \\boxed{{{value}}}" if value else "I am not sure."

    return solution


def test_answer_keys_compare_what_an_answer_is_not_how_it_looks():
    same = ["72", "72.0", "72 \\text{ clips}", "\\$72", "72 clips", " 72 ", "72."]
    assert {answer_key(a) for a in same} == {"72"}
    assert answer_key("1,000") == answer_key("1\\,000") == answer_key("1000")
    assert answer_key("\\dfrac{1}{2}") == answer_key("\\frac{1}{2}") != answer_key("0.5")
    assert answer_key("2x") != answer_key("2") and answer_key("50\\%") == "50"


@pytest.mark.parametrize(("answers", "d", "modal", "agreeing"), [
    (["7", "7", "7"], 0.0, 0, 3),
    (["7", "8", "7"], 0.5, 0, 2),
    (["8", "7", "7"], 0.5, 1, 2),
    (["1", "2", "3"], 1.0, 0, 1),
    ([None, None, None], 1.0, 0, 0),
    ([None, "7", "7.0"], 0.5, 1, 2),
    (["1", "2", "2", "1"], 2 / 3, 0, 2),  # a tie: the group whose first member came first
    (["5", "5"], 0.0, 0, 2),
])
def test_agreement_difficulty(answers, d, modal, agreeing):
    assert agreement_difficulty(answers) == (pytest.approx(d), modal, agreeing)


def test_agreement_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        agreement_difficulty(["1"])
    with pytest.raises(InvalidSettings, match="agreement_samples"):
        Context(agreement_samples=1, base_url="http://x.invalid/v1")
    assert Context(assess="agreement", agreement_samples=16, base_url="http://x.invalid/v1").assess == "agreement"


def test_samples_set_d_and_an_easy_step_reuses_its_sample(fake_models):
    """Sub-problem 1: the samples disagree (d 0.5, System 2); 2 and 3: they agree (d 0, System 1, no new call)."""
    answers = {SUBPROBLEMS[0]: ["10", "11", "10"], SUBPROBLEMS[1]: ["20"], SUBPROBLEMS[2]: ["30"]}
    fakes = fake_models(make_script(solution=varying(answers)))
    result = solve(PROBLEM, context=fake_context(assess="agreement", final_step="decomposed"))

    assert [(s["difficulty"], s["mode"], s.get("from_sample")) for s in result.steps] == [
        (0.5, "system2", None), (0.0, "system1", 0), (0.0, "system1", 0)]
    solves = [c for c in fakes.calls if stage_of(c) in ("system1", "system2")]
    # 3 System 1 samples per sub-problem and one System 2 solve; the easy steps cost no extra call
    assert [stage_of(c) for c in solves] == ["system1"] * 3 + ["system2"] + ["system1"] * 6
    assert "assess" not in fakes.stages()  # no self-rating is asked
    assert result.answer == "30" and result.steps[2]["solution"] == "Quickly: \\boxed{30}"
    # each sample is exactly the System 1 request of the step: the Eq. 5 context with the earlier solutions
    for k, first in ((0, 0), (1, 4), (2, 7)):
        samples = solves[first : first + 3]
        assert all(c == samples[0] for c in samples)
        messages = samples[0]["messages"]
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * k + ["user"]
        assert [m["content"] for m in messages if m["role"] == "assistant"] == [
            s["solution"] for s in result.steps[:k]]
        assert messages[-1]["content"].endswith(prompts.SOLVE_FAST) and current_subproblem(samples[0]) == (
            SUBPROBLEMS[k])
    # the samples' tokens are the assess stage's; a reused step's unit tokens are its sample's
    assert result.usage["assess"]["calls"] == 9 and result.usage["solve"]["calls"] == 1
    assert result.steps[1]["completion_tokens"] > 0
    assert result.completion_tokens == sum(u["completion_tokens"] for u in result.usage.values())


def test_the_samples_are_requested_concurrently_and_recorded(fake_models):
    def slow(body):
        reply = make_script()(body)
        if stage_of(body) == "system1":
            reply.delay = 0.2
        return reply

    fakes = fake_models(slow)
    graph = compile_scale_graph(checkpointer=InMemorySaver())
    config = run_config(thread_id="t")
    graph.invoke({"problem": PROBLEM}, config=config, context=fake_context(assess="agreement", agreement_samples=4))
    state = graph.get_state(config).values
    assert fakes.max_in_flight >= 4
    first = state["assessments"]["0"]
    assert len(first["samples"]) == 4 and first["modal"] == 0 and first["contextual"] is True
    assert first["samples"][0]["answer"] == "10" and first["assessed"] == first["difficulty"] == 0.0
    assert first["completion_tokens"] == sum(s["completion_tokens"] for s in first["samples"])


def test_the_final_question_is_forced_without_sampling(fake_models):
    fakes = fake_models(make_script())
    result = solve(PROBLEM, context=fake_context(assess="agreement"))  # final_step="question"
    last = result.steps[-1]
    assert (last["difficulty"], last["forced"], last["assessed_difficulty"], last["mode"]) == (
        0.9, "final_step=question→d=0.9", None, "system2")
    # two sub-problems sampled 3 times each, then System 2 on the question; nothing else
    assert [stage_of(c) for c in fakes.calls if stage_of(c) != "decompose"] == ["system1"] * 6 + ["system2"]


def test_samples_without_an_answer_give_d_1(fake_models):
    answers = {s: [""] for s in SUBPROBLEMS}  # no boxed answer in any sample
    fake_models(make_script(solution=varying(answers)))
    result = solve(PROBLEM, context=fake_context(assess="agreement", final_step="decomposed"))
    assert all(s["difficulty"] == 1.0 and s["mode"] == "system2" for s in result.steps)
    assert all(s["fallback"] == NO_AGREEMENT_ANSWER for s in result.steps)


def test_all_fast_reuses_every_sample_and_solves_only_the_forced_question(fake_models):
    fakes = fake_models(make_script())
    result = solve(PROBLEM, context=fake_context(assess="agreement", threshold=1.0))
    assert [s["mode"] for s in result.steps] == ["system1"] * 3
    assert [s.get("from_sample") for s in result.steps] == [0, 0, None]  # the question has no samples
    assert sum(stage_of(c) == "system1" for c in fakes.calls) == 3 + 3 + 1


def test_eval_rows_and_calibration_of_an_agreement_run(fake_models, tmp_path):
    fake_models(make_script(solution=varying({SUBPROBLEMS[0]: ["10", "11", "12"], SUBPROBLEMS[1]: ["20"],
                                              SUBPROBLEMS[2]: ["30"]})))
    data = tmp_path / "tiny.jsonl"
    data.write_text(json.dumps({"id": "p0", "problem": PROBLEM, "answer": "30"}) + "\n")
    dataset = load_dataset(str(data))
    out = tmp_path / "results"
    self_rated = EvalRun(dataset=dataset, method=get_method("scale"), context=fake_context(), out_dir=out)
    agreement = EvalRun(dataset=dataset, method=get_method("scale"), context=fake_context(assess="agreement"),
                        out_dir=out)
    five = EvalRun(dataset=dataset, method=get_method("scale"),
                   context=fake_context(assess="agreement", agreement_samples=5), out_dir=out)
    assert len({self_rated.path, agreement.path, five.path}) == 3
    assert "agreement_samples" not in self_rated.settings()  # a self-rated run keeps the identity it had
    assert agreement.settings()["agreement_samples"] == 3 and five.settings()["agreement_samples"] == 5
    run_eval(agreement)
    (row,) = read_rows(agreement.path)
    assert [u["from_sample"] for u in row["units"]] == [None, 0, None]
    assert [u["mode"] for u in row["units"]] == ["system2", "system1", "system2"]
    assert row["tokens"]["by_mode"]["system1"] == row["units"][1]["completion_tokens"]

    calibration = Calibration(results_dir=out, out_dir=out / OUT_SUBDIR, context=fake_context())
    assert run_calibration(calibration).done == 2  # the forced final question is not sampled: no d to judge
    rows = read_rows(out / OUT_SUBDIR / CALIBRATION_FILE)
    assert {r["assess"] for r in rows} == {"agreement"} and rows[0]["d"] == 1.0
    assert sorted(r["index"] for r in rows) == [0, 1]


def test_solve_command_with_the_agreement_assessor(tmp_path, capsys):
    with FakeOpenAIServer(make_script()) as server:
        common = ["--base-url", server.base_url, "--candidates", "1", "--json", "--quiet"]
        assert main(["solve", PROBLEM, "--assess", "agreement", "--agreement-samples", "2", *common]) == 0
        out = json.loads(capsys.readouterr().out)
        assert [s.get("from_sample") for s in out["steps"]] == [0, 0, None]
        assert sum(stage_of(b) == "system1" for b in server.requests) == 4  # 2 samples × 2 sub-problems
        with pytest.raises(SystemExit) as exit_info:
            main(["solve", PROBLEM, "--agreement-samples", "1", *common])
        assert exit_info.value.code == 2


def test_an_unusable_reply_among_the_samples_is_a_sample_without_an_answer(fake_models):
    """One sample cut by the budget (finish_reason length, no box) only counts as a disagreeing sample."""
    calls = itertools.count()
    script = make_script()

    def one_cut(body):
        if stage_of(body) == "system1" and next(calls) == 1:
            return Reply(content="Quickly, the", finish_reason="length")
        return script(body)

    fake_models(one_cut)
    result = solve(PROBLEM, context=fake_context(assess="agreement", final_step="decomposed"))
    assert result.steps[0]["difficulty"] == 0.5 and result.steps[0]["mode"] == "system2"

"""Routing under a token budget (``token_budget``): System 2 to the hardest sub-problems while the expected tokens
of the problem stay within N; the effective τ recorded on the run; ``scale sweep --token-budgets`` compared at
equal tokens with fixed-τ runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scale_graph import solve
from scale_graph.cli import main
from scale_graph.eval.equal_tokens import REPORT_FILE, compare, interpolate
from scale_graph.eval.metrics import RunMetrics, compute_all
from scale_graph.eval.results import read_dirs
from scale_graph.nodes.budget import Unsolved, blend, budget_routing, expected_costs, plan_modes
from scale_graph.testing import FakeOpenAIServer, stage_of
from tests.conftest import fake_context, make_script

PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"
SUBS = ["Find A.", "Find B.", "Give the final answer."]
DIFFICULTY = {SUBS[0]: '{"difficulty": 0.1}', SUBS[1]: '{"difficulty": 0.5}', SUBS[2]: '{"difficulty": 0.3}'}
COSTS = {"decompose": 20, "assess": 5, "system1": 10, "system2": 100}
"""Completion tokens the fake reports per call, so the expected costs are exact."""


def costed(script):
    def run(body):
        reply = script(body)
        reply.completion_tokens = COSTS.get(stage_of(body), reply.completion_tokens)
        return reply

    return run


SCRIPT = costed(make_script(SUBS, DIFFICULTY))
GIVEN = {"system1_token_cost": 10.0, "system2_token_cost": 100.0}


def budget_context(budget, **kw):
    return fake_context(candidates=1, token_budget=budget, **{**GIVEN, **kw})


# --- the plan ------------------------------------------------------------------------------------------------------


def unsolved(index, d, fast=10.0, deep=100.0, assess=0.0):
    return Unsolved(index, d, assess, fast, deep)


def test_the_plan_gives_system2_by_difficulty_while_it_fits():
    items = [unsolved(0, 0.1), unsolved(1, 0.5), unsolved(2, 0.9)]
    # spent 35; all on System 1: 65; each System 2 adds 90
    assert plan_modes(items, 35, 100) == (0.9, [], 65)
    assert plan_modes(items, 35, 155) == (0.5, [2], 155)
    assert plan_modes(items, 35, 300) == (0.1, [1, 2], 245)
    assert plan_modes(items, 35, 335) == (-1.0, [0, 1, 2], 335)
    assert plan_modes(items, 500, 100) == (0.9, [], 530)  # over already: all on System 1


def test_equal_difficulties_move_together_and_unassessed_stay_on_system1():
    tied = [unsolved(0, 0.5), unsolved(1, 0.5), unsolved(2, None, assess=7.0)]
    assert plan_modes(tied, 0, 150) == (0.5, [], 37)  # both or neither: 217 does not fit
    assert plan_modes(tied, 0, 217) == (-1.0, [0, 1], 217)
    assert plan_modes([unsolved(0, None)], 0, 10**6) == (1.0, [], 10)


def test_costs_start_from_the_given_or_the_budget_and_learn_from_the_run():
    ctx = fake_context(token_budget=500, system1_max_tokens=300, **{"system2_token_cost": 80.0})
    state = {"steps": [], "assessments": {"0": {"completion_tokens": 4}, "1": {"completion_tokens": 0}}}
    costs, sources = expected_costs(state, ctx)
    assert costs == {"system1": 300.0, "system2": 80.0, "assess": 4.0}
    assert sources == {"system1": "max_tokens", "system2": "given", "assess": "history"}
    state["steps"] = [{"mode": "system1", "completion_tokens": 20}, {"mode": "system2", "completion_tokens": 200}]
    costs, sources = expected_costs(state, ctx)
    assert costs["system1"] == blend(300, [20]) == 160 and costs["system2"] == 140
    assert sources["system1"] == sources["system2"] == "history"
    agreement = fake_context(token_budget=500, assess="agreement", agreement_samples=4, **GIVEN)
    assert expected_costs({"steps": [], "assessments": {}}, agreement)[0]["assess"] == 40.0


def test_no_plan_without_a_budget_or_before_the_next_step_is_assessed():
    state = {"subproblems": ["a", "b"], "steps": [], "assessments": {}, "usage": {}}
    assert budget_routing(state, fake_context()) is None
    assert budget_routing(state, fake_context(token_budget=100)) is None  # contextual: not assessed yet


# --- whole runs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("budget", "modes", "thresholds"), [
    (100, ["system1"] * 3, [0.9, 0.9, 0.9]),
    (200, ["system1", "system1", "system2"], [0.5, 0.5, -1.0]),
    (300, ["system1", "system2", "system2"], [0.1, -1.0, -1.0]),
    (400, ["system2"] * 3, [-1.0, -1.0, -1.0]),
])
def test_a_run_spends_its_budget_on_the_hardest_subproblems(fake_models, budget, modes, thresholds):
    """spent before solving: 20 (decompose) + 15 (assess); System 1 10 tokens, System 2 100; the final question is
    forced to d 0.9, sub-problems A and B are 0.1 and 0.5. The plan is made again before each step."""
    fake_models(SCRIPT)
    result = solve(PROBLEM, context=budget_context(budget))
    assert [s["mode"] for s in result.steps] == modes
    assert [s["threshold"] for s in result.steps] == thresholds
    assert result.completion_tokens <= budget or modes == ["system1"] * 3
    plan = result.budget_routing
    assert plan is not None and plan["token_budget"] == budget and plan["at_step"] == 2
    assert plan["threshold"] == thresholds[-1] and plan["costs"]["system1"] == 10.0
    assert result.to_dict()["budget_routing"] == plan


def test_the_first_plan_is_recorded_with_its_costs_and_sources(fake_models):
    fake_models(SCRIPT)
    from langgraph.checkpoint.memory import InMemorySaver

    from scale_graph.api import run_config
    from scale_graph.graph.scale import compile_scale_graph

    graph = compile_scale_graph(checkpointer=InMemorySaver())
    config = run_config(thread_id="t")
    graph.invoke({"problem": PROBLEM}, config=config, context=budget_context(200))
    plans = [s.values.get("budget_routing") for s in graph.get_state_history(config)
             if s.values.get("budget_routing") and s.next == ("solve_fast",)]
    first = min(plans, key=lambda p: p["at_step"])
    assert (first["spent"], first["expected"], first["system2"], first["threshold"]) == (35, 155, [2], 0.5)
    assert first["sources"] == {"system1": "given", "system2": "given", "assess": "history"}


def test_without_costs_a_run_is_cautious_then_learns(fake_models):
    fake_models(SCRIPT)
    result = solve(PROBLEM, context=fake_context(candidates=1, token_budget=2500, system2_max_tokens=2048))
    # priors: 512 / 2048 tokens; after A on System 1 (10 tokens) its cost is blended down to 261
    assert [s["mode"] for s in result.steps] == ["system1", "system1", "system2"]
    assert result.budget_routing["sources"]["system1"] == "history"
    assert result.budget_routing["costs"]["system1"] == pytest.approx((512 + 10 + 10) / 3, abs=1e-3)


def test_contextual_and_agreement_plans_count_what_is_still_to_assess(fake_models):
    fake_models(SCRIPT)
    contextual = solve(PROBLEM, context=budget_context(200, assess="contextual"))
    assert [s["mode"] for s in contextual.steps] == ["system1", "system1", "system2"]
    fakes = fake_models(SCRIPT)
    agreement = solve(PROBLEM, context=budget_context(250, assess="agreement"))
    # the samples (3 × 10 tokens) decide d = 0 for A and B, and their System 1 solutions are reused for free
    assert [(s["mode"], s.get("from_sample")) for s in agreement.steps] == [
        ("system1", 0), ("system1", 0), ("system2", None)]
    assert sum(stage_of(c) == "system2" for c in fakes.calls) == 1
    assert agreement.budget_routing["costs"]["assess"] == 30.0


def test_without_a_budget_the_run_routes_by_tau_and_records_no_plan(fake_models):
    fake_models(SCRIPT)
    result = solve(PROBLEM, context=fake_context(candidates=1))
    assert result.budget_routing is None and "budget_routing" not in result.to_dict()
    assert all("threshold" not in s for s in result.steps)
    assert [s["mode"] for s in result.steps] == ["system1", "system2", "system2"]


# --- the commands ---------------------------------------------------------------------------------------------------


def test_solve_with_a_budget_and_costs_from_a_calibration_file(tmp_path, capsys):
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({"system1": {"completion_tokens": t1}, "system2": {
        "completion_tokens": t2}}) + "\n" for t1, t2 in ((8, 90), (12, 110))))
    with FakeOpenAIServer(SCRIPT) as server:
        common = ["--base-url", server.base_url, "--candidates", "1", "--json", "--quiet"]
        assert main(["solve", PROBLEM, "--token-budget", "200", "--token-costs", str(calibration), *common]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["budget_routing"]["costs"]["system2"] == 100.0 and out["budget_routing"]["token_budget"] == 200
        assert [s["mode"] for s in out["steps"]] == ["system1", "system1", "system2"]
        assert main(["solve", PROBLEM, "--token-budget", "200", "--token-costs", str(tmp_path / "none"),
                     *common]) == 2
        assert "token_costs" in capsys.readouterr().err


def metric(label_settings, tok, acc, dataset="d", method="scale"):
    return RunMetrics(run=str(label_settings), dataset=dataset, method=method, settings=label_settings, problems=1,
                      attempts=1, acc=acc, tok=tok, solve_tok=tok, tok_by_stage={}, tok_by_mode={}, tpi=0, hard=0,
                      units=1, prompt_tokens=0, calls=0, seconds=0)


def test_equal_tokens_reads_the_fixed_tau_curve_at_the_budget_runs_cost():
    assert interpolate([(100, 0.2), (300, 0.6)], 200) == pytest.approx(0.4)
    assert interpolate([(100, 0.2), (300, 0.6)], 50) is None and interpolate([], 1) is None
    assert interpolate([(100, 0.2), (100, 0.4)], 100) == pytest.approx(0.3)
    fixed = [metric({"threshold": 1.0, "assess": "upfront"}, 100, 0.2, method="all-fast"),
             metric({"threshold": 0.2, "assess": "upfront"}, 300, 0.6)]
    budget = metric({"threshold": 0.2, "token_budget": 250, "assess": "upfront"}, 250, 0.6)
    other = metric({"threshold": 0.2, "token_budget": 250, "assess": "agreement"}, 250, 0.6)
    first, second = compare([*fixed, budget, other])
    assert first.budget is budget and first.fixed_acc == pytest.approx(0.5) and first.gain == pytest.approx(0.1)
    assert first.nearest is fixed[1] and budget.label == "scale budget=250"
    assert second.fixed == [] and second.fixed_acc is None and other.label == "scale budget=250 agreement"


def test_sweep_compares_budget_runs_with_fixed_tau_runs(tmp_path):
    out = tmp_path / "sweep"
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"{PROBLEM} ({i})", "answer": "30"}) + "\n"
                            for i in range(2)))
    with FakeOpenAIServer(SCRIPT) as server:
        common = ["--dataset", str(data), "--limit", "2", "--out", str(out), "--base-url", server.base_url,
                  "--candidates", "1", "--quiet", *(f"--{k.replace('_', '-')}={v}" for k, v in GIVEN.items())]
        assert main(["sweep", "--thresholds=-1,1", "--token-budgets", "200,300", *common]) == 0
    runs = {m.label: m for m in compute_all(read_dirs([out]))}
    assert set(runs) == {"scale τ=-1", "scale τ=1", "scale budget=200", "scale budget=300"}
    assert runs["scale budget=200"].hard == pytest.approx(1 / 3) and runs["scale τ=1"].hard == 0
    report = (out / REPORT_FILE).read_text()
    assert "| scale budget=200 |" in report and "| scale budget=300 |" in report
    assert (out / "equal_tokens.png").exists()


def test_sweep_refuses_a_budget_below_one(tmp_path):
    assert main(["sweep", "--dataset", "gsm8k_dev", "--token-budgets", "0", "--out", str(tmp_path)]) == 2


def test_budget_settings_are_part_of_a_runs_identity_only_when_it_routes_by_budget():
    from scale_graph.eval.datasets import load_dataset
    from scale_graph.eval.methods import get_method
    from scale_graph.eval.runner import EvalRun

    def settings(**kw):
        return EvalRun(dataset=load_dataset("gsm8k_dev"), method=get_method("scale"), context=fake_context(**kw),
                       out_dir=Path("unused")).settings()

    plain = settings()
    assert not {"token_budget", "system1_token_cost", "agreement_samples"} & set(plain)
    assert settings(**GIVEN) == plain  # costs without a budget change nothing
    routed = settings(token_budget=600, **GIVEN)
    assert (routed["token_budget"], routed["system1_token_cost"], routed["system2_token_cost"]) == (600, 10.0, 100.0)

"""The baseline graphs on the scripted fake model: calls, prompts, budgets, voting and stopping rules."""

from __future__ import annotations

import itertools
import threading

import pytest

from scale_graph import prompts
from scale_graph.eval.methods import METHODS, get_method
from scale_graph.testing import Reply, scale_script, user_text
from tests.conftest import fake_context


def run(method: str, **ctx):
    m = get_method(method)
    return m.graph().invoke({"problem": "What is 6 * 7?"}, context=m.context(fake_context(**ctx)))


def test_cot_is_one_system2_call_with_the_zero_shot_prompt(fake_models):
    fakes = fake_models(lambda body: Reply(content="6 * 7 = 42, so \\boxed{42}"))
    out = run("cot", system2_max_tokens=300)
    assert out["answer"] == "42" and out["answer_fallback"] is None
    assert len(fakes.calls) == 1
    body = fakes.calls[0]
    assert body["messages"][0] == {"role": "system", "content": prompts.COT_SYSTEM}
    assert body["messages"][1]["content"] == "What is 6 * 7?"
    # The paper's CoT baseline prompt, word for word.
    assert prompts.COT_SYSTEM == "Please reason step by step, and put your final answer within \\boxed{}."
    assert body["max_completion_tokens"] == 300
    assert [s["index"] for s in out["samples"]] == [0]
    assert out["usage"]["solve"]["calls"] == 1


def test_cot_without_a_box_has_no_answer(fake_models):
    fake_models(lambda body: Reply(content="It is forty-two."))
    out = run("cot")
    assert out["answer"] is None and out["answer_fallback"] == "no_boxed_answer"


def test_majority_draws_n_samples_and_votes_by_equivalence(fake_models):
    replies = iter(
        ["\\boxed{3}", "\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "no box", "\\boxed{\\dfrac{1}{2}}"]
    )
    lock = threading.Lock()

    def script(body):
        with lock:
            return Reply(content=next(replies))

    fakes = fake_models(script)
    out = run("majority", samples=5)
    assert [b["messages"][0]["content"] for b in fakes.calls] == [prompts.COT_SYSTEM] * 5
    assert sorted(s["index"] for s in out["samples"]) == [0, 1, 2, 3, 4]
    # the three spellings of 1/2 are one group of 3; which spelling stands for it depends on sample order
    assert out["answer"] in {"\\frac{1}{2}", "0.5", "\\dfrac{1}{2}"}
    assert [len(v["samples"]) for v in out["votes"]] == [3, 1]
    assert out["usage"]["solve"]["calls"] == 5


def test_majority_with_no_boxed_answer_at_all(fake_models):
    fake_models(lambda body: Reply(content="no idea"))
    out = run("majority", samples=3)
    assert out["answer"] is None and out["votes"] == [] and out["answer_fallback"] == "no_boxed_answer"


def inftythink_script(answer_in_round: int | None):
    """Rounds reply without a box until ``answer_in_round`` (1-based); summaries say 'SUMMARY n'."""
    rounds = itertools.count(1)
    summaries = itertools.count(1)

    def script(body):
        if "summarize" in body["messages"][0]["content"]:
            return Reply(content=f"SUMMARY {next(summaries)}")
        n = next(rounds)
        if answer_in_round is not None and n == answer_in_round:
            return Reply(content=f"round {n} done: \\boxed{{42}}")
        return Reply(content=f"round {n} reasoning, not finished")

    return script


def test_inftythink_continues_from_the_summary_until_a_boxed_answer(fake_models):
    fakes = fake_models(inftythink_script(answer_in_round=2))
    out = run("inftythink", rounds=4, round_max_tokens=77)
    assert out["answer"] == "42"
    assert [r["index"] for r in out["rounds"]] == [0, 1]
    assert [s["text"] for s in out["summaries"]] == ["SUMMARY 1"]
    think_calls = [b for b in fakes.calls if "summarize" not in b["messages"][0]["content"]]
    assert [b["max_completion_tokens"] for b in think_calls] == [77, 77]
    second = user_text(think_calls[1])
    assert "SUMMARY 1" in second and "round 1 reasoning" not in second  # sees the summary, not the old text
    assert set(out["usage"]) == {"solve", "summarize"}


def test_inftythink_stops_at_the_round_limit(fake_models):
    fake_models(inftythink_script(answer_in_round=None))
    out = run("inftythink", rounds=3)
    assert len(out["rounds"]) == 3 and len(out["summaries"]) == 2
    assert out["answer"] is None and out["answer_fallback"] == "no_boxed_answer"


@pytest.mark.parametrize(("method", "mode"), [("all-fast", "system1"), ("all-deep", "system2")])
def test_ablations_force_every_step_to_one_mode(fake_models, method, mode):
    fakes = fake_models(scale_script)  # difficulties 0.1 and 0.9
    out = run(method, threshold=0.5)  # the method's forced τ wins over the caller's
    assert [s["mode"] for s in out["steps"]] == [mode, mode]
    assert [st for st in fakes.stages() if st.startswith("system")] == [mode, mode]


def test_every_method_is_registered_with_a_graph():
    assert set(METHODS) == {"scale", "cot", "majority", "inftythink", "all-fast", "all-deep"}
    for method in METHODS.values():
        assert method.graph() is not None
    with pytest.raises(KeyError, match="unknown method 'best'"):
        get_method("best")


def test_langgraph_json_exposes_every_graph():
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    graphs = json.loads((root / "langgraph.json").read_text())["graphs"]
    assert set(graphs) == {"scale", "cot", "majority", "inftythink"}
    for name, target in graphs.items():
        path, attr = target.split(":")
        module = path.removeprefix("./src/").removesuffix(".py").replace("/", ".")
        assert importlib.util.find_spec(module) is not None
        compiled = getattr(importlib.import_module(module), attr)
        assert compiled.name == name

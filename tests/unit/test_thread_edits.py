"""Threads as Studio and embedding apps use them (issue 12, items 1-3), on the scripted fake model:

- a new problem on a used thread starts a fresh solve there, and the earlier run stays replayable;
- a checkpointed parent graph that calls SCALE twice gets two answers;
- a state edit at any checkpoint routes (the branches read only the state), with no ``as_node`` too;
- an assessments edit may use the shorthand ``{"0": 0.95}``; any other shape is refused and nothing is written.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from scale_graph import api, threads
from scale_graph.context import Context
from scale_graph.graph.scale import compile_scale_graph
from scale_graph.nodes import next_step
from scale_graph.state import InvalidEdit, check_assessments_edit
from scale_graph.testing import Reply, current_subproblem, stage_of
from tests.conftest import fake_context

DECOMPOSITION = '{"subproblems": ["Read the number.", "Give the final answer."]}'


def number_in(text: str) -> int:
    return int(re.findall(r"What is (\d+)\?", text)[-1])


def echo_script(body: dict[str, Any]) -> Reply:
    """Decomposes every problem in two; sub-problem 1 is easy, the last one hard; the answer is the number the
    problem asks for, so an answer shows which problem it belongs to."""
    stage = stage_of(body)
    if stage == "decompose":
        return Reply(content=DECOMPOSITION)
    if stage == "select":
        return Reply(content='{"choice": 1}')
    if stage == "assess":
        return Reply(content='{"difficulty": 0.1}' if "Read" in current_subproblem(body) else '{"difficulty": 0.9}')
    if stage in {"system1", "system2"}:
        problem = " ".join(str(m["content"]) for m in body["messages"])
        return Reply(content=f"So \\boxed{{{number_in(problem)}}}")
    raise AssertionError(f"unexpected request: {body}")


@pytest.fixture
def graph(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "check_endpoint", lambda *args, **kwargs: None)
    with threads.open_thread_graph(str(tmp_path / "threads.sqlite")) as g:
        yield g


def config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    ids = {"checkpoint_ns": "", "checkpoint_id": checkpoint_id} if checkpoint_id else {}
    return {"configurable": {"thread_id": thread_id, **ids}}


def test_a_new_problem_on_a_used_thread_starts_a_fresh_solve(fake_models, graph) -> None:
    fakes = fake_models(echo_script)
    first = graph.invoke({"problem": "What is 7?"}, config("t1"), context=fake_context())
    calls_per_solve = len(fakes.calls)
    second = graph.invoke({"problem": "What is 12?"}, config("t1"), context=fake_context())
    assert (first["answer"], second["answer"]) == ("7", "12")

    state = graph.get_state(config("t1")).values
    assert state["problem"] == "What is 12?" and state["status"] == "completed"
    assert len(state["decompositions"]) == 2 and len(state["steps"]) == 2  # replaced, not appended to
    assert sum(u["calls"] for u in state["usage"].values()) == calls_per_solve
    assert [s["mode"] for s in state["steps"]] == ["system1", "system2"]
    info = threads.info(graph, "t1")
    assert (info.problem, info.status, info.steps_done, info.answer) == ("What is 12?", "done", 2, "12")

    # both runs are in the history; the first one can still be replayed from its own checkpoints
    history = threads.history(graph, "t1")
    assert sum(c.source == "input" for c in history) == 2
    first_run = [c for c in history if c.next and c.next[0].startswith("solve_") and c.steps_done == 1]
    oldest = first_run[-1]  # newest first: the last match belongs to the first problem
    replayed = graph.invoke(None, config("t1", oldest.checkpoint_id), context=fake_context())
    assert replayed["answer"] == "7"


class Conversation(TypedDict, total=False):
    problem: str
    answer: str | None


def test_a_checkpointed_parent_graph_calling_scale_twice_gets_two_answers(fake_models) -> None:
    fake_models(echo_script)
    builder = StateGraph(Conversation, context_schema=Context)
    builder.add_node("scale", compile_scale_graph(checkpointer=True))  # keeps its state across the parent's turns
    builder.add_edge(START, "scale")
    builder.add_edge("scale", END)
    parent = builder.compile(checkpointer=InMemorySaver())
    answers = [parent.invoke({"problem": p}, config("chat"), context=fake_context())["answer"]
               for p in ("What is 3?", "What is 5?")]
    assert answers == ["3", "5"]


def finished_thread(graph) -> list[threads.CheckpointInfo]:
    graph.invoke({"problem": "What is 7?"}, config("t1"), context=fake_context())
    return threads.history(graph, "t1")


def test_an_edit_without_as_node_at_a_route_checkpoint_reroutes(fake_models, graph) -> None:
    fakes = fake_models(echo_script)
    history = finished_thread(graph)
    at_route = next(c for c in history if c.writers == ["route"] and c.next == ("solve_fast",))
    edited = graph.update_state(config("t1", at_route.checkpoint_id), {"assessments": {"0": 0.95}})
    snap = graph.get_state(edited)
    assert snap.next == ("solve_deep",)  # Eq. 4 with the run's τ (0.2), written as `route`, no runtime needed
    assert snap.values["assessments"]["0"]["forced"] == "edit→d=0.95"
    assert snap.values["assessments"]["0"]["assessed"] == 0.1  # the model's own score is kept beside it

    asked = len(fakes.calls)
    result = graph.invoke(None, edited, context=fake_context())
    assert [s["mode"] for s in result["steps"]] == ["system2", "system2"] and result["answer"] == "7"
    assert [stage_of(b) for b in fakes.calls[asked:]] == ["system2", "system2"]


def test_an_edit_of_tau_in_the_plan_reroutes_the_remaining_steps(fake_models, graph) -> None:
    fake_models(echo_script)
    history = finished_thread(graph)
    at_route = next(c for c in history if c.writers == ["route"] and c.next == ("solve_fast",))
    plan = graph.get_state(config("t1", at_route.checkpoint_id)).values["plan"]
    edited = graph.update_state(config("t1", at_route.checkpoint_id), {"plan": {**plan, "threshold": 0.0}})
    assert graph.get_state(edited).next == ("solve_deep",)


@pytest.mark.parametrize("writer", ["start", "decompose", "select", "assess", "route", "solve_fast", "solve_deep",
                                    "finalize"])
def test_an_edit_at_a_checkpoint_of_any_single_writer_is_written_and_routes(fake_models, graph, writer) -> None:
    fake_models(echo_script)
    history = finished_thread(graph)
    at = next(c for c in history if c.writers[0].split(" ")[0] == writer)
    before = graph.get_state(config("t1", at.checkpoint_id))
    edited = graph.update_state(config("t1", at.checkpoint_id), {"problem_id": "edited"})
    after = graph.get_state(edited)
    assert after.values["problem_id"] == "edited"
    assert set(after.next) == set(before.next)  # same way on: the branches ran on the state alone


def test_an_edit_after_the_assessments_keeps_the_edit_and_asks_nothing_again(fake_models, graph) -> None:
    fakes = fake_models(echo_script)
    history = finished_thread(graph)
    at = next(c for c in history if c.writers == ["assess ×2"])  # LangGraph writes such an edit as `select`
    edited = graph.update_state(config("t1", at.checkpoint_id), {"assessments": {"0": 0.95}})
    assert graph.get_state(edited).next == ("route",)
    asked = len(fakes.calls)
    result = graph.invoke(None, edited, context=fake_context())
    assert [stage_of(b) for b in fakes.calls[asked:]] == ["system2", "system2"]  # no assessment asked again
    assert result["steps"][0]["forced"] == "edit→d=0.95"


@pytest.mark.parametrize("payload, message", [
    ({"0": "high"}, "a difficulty must be a number in \\[0, 1\\]"),
    ({"0": 1.5}, "a difficulty must be a number in \\[0, 1\\]"),
    ({"0": float("nan")}, "a difficulty must be a number in \\[0, 1\\]"),
    ({"0": True}, "a difficulty must be a number in \\[0, 1\\]"),
    ({"first": 0.5}, "keys are sub-problem indexes"),
    ({"-1": 0.5}, "keys are sub-problem indexes"),
    ([0.5], "expected"),
    ({"0": {"difficulty": 0.5, "bogus": 1}}, "unknown fields bogus"),
    ({"0": {"index": 3, "difficulty": 0.5}}, "its index is 3, not 0"),
    ({"0": {"assessed": 0.5}}, "a difficulty must be a number"),
])
def test_a_malformed_assessments_edit_is_refused_and_nothing_is_written(fake_models, graph, payload,
                                                                        message) -> None:
    fake_models(echo_script)
    history = finished_thread(graph)
    at_route = next(c for c in history if c.writers == ["route"] and c.next == ("solve_fast",))
    with pytest.raises(InvalidEdit, match=message):
        graph.update_state(config("t1", at_route.checkpoint_id), {"assessments": payload})
    assert len(threads.history(graph, "t1")) == len(history)


def test_full_records_and_the_shorthand_are_both_accepted() -> None:
    current = {"0": {"index": 0, "difficulty": 0.1, "assessed": 0.1, "forced": None, "fallback": None,
                     "contextual": True, "completion_tokens": 9}}
    edited = check_assessments_edit({"0": 0.7, 1: {"difficulty": 1}}, current)
    assert edited["0"] == {**current["0"], "difficulty": 0.7, "forced": "edit→d=0.7"}
    assert edited["1"] == {"index": 1, "difficulty": 1.0, "fallback": None, "contextual": False,
                           "completion_tokens": 0}


def test_the_router_needs_no_runtime() -> None:
    state: Any = {"subproblems": ["a", "b"], "steps": [], "plan": {"candidates": 1, "assess": "upfront",
                  "threshold": 0.5}, "assessments": {"0": {"difficulty": 0.6}}}
    assert next_step(state) == "solve_deep"
    state["plan"]["threshold"] = 0.6
    assert next_step(state) == "solve_fast"  # d == τ is System 1 (Eq. 4)


# --- the baselines behave the same way ----------------------------------------------------------------------


def echo_cot(body: dict[str, Any]) -> Reply:
    """A chain-of-thought reply boxing the number the problem asks for."""
    return Reply(content=f"So \\boxed{{{number_in(str(body['messages'][-1]['content']))}}}")


@pytest.mark.parametrize("name, context", [("cot", {}), ("majority", {"samples": 3}),
                                           ("inftythink", {"rounds": 2})])
def test_a_baseline_solves_a_new_problem_on_a_used_thread_afresh(fake_models, name, context) -> None:
    from scale_graph.baselines import graphs

    fake_models(echo_cot)
    graph = getattr(graphs, f"compile_{name}_graph")(checkpointer=InMemorySaver())
    ctx = fake_context(**context)
    first = graph.invoke({"problem": "What is 7?"}, config("t1"), context=ctx)
    second = graph.invoke({"problem": "What is 12?"}, config("t1"), context=ctx)
    assert (first["answer"], second["answer"]) == ("7", "12")
    records = second["rounds"] if name == "inftythink" else second["samples"]
    assert len(records) == (3 if name == "majority" else 1)  # replaced, not appended to
    assert second["usage"]["solve"]["calls"] == len(records)


def test_an_edit_in_an_inftythink_run_routes_without_a_runtime(fake_models) -> None:
    from scale_graph.baselines.graphs import compile_inftythink_graph

    fake_models(lambda body: Reply(content="SUMMARY" if "summarize" in body["messages"][0]["content"]
                                   else "not finished"))
    graph = compile_inftythink_graph(checkpointer=InMemorySaver())
    graph.invoke({"problem": "What is 7?"}, config("t1"), context=fake_context(rounds=3))
    after_think = next(s for s in graph.get_state_history(config("t1")) if s.next == ("summarize",))
    edited = graph.update_state(after_think.config, {"plan": {"rounds": 1}})  # written as think: after_round runs
    assert graph.get_state(edited).next == ("conclude",)

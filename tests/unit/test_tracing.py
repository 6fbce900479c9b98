"""Tracing: the run tree a LangSmith project would receive, captured offline with an in-memory tracer."""

from __future__ import annotations

from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from scale_graph.api import run_config
from scale_graph.graph.scale import graph
from tests.conftest import SUBPROBLEMS, fake_context, make_script


class CollectingTracer(BaseTracer):
    """Keeps every finished root run (with its children) in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


def walk(run: Run, parents: tuple[str, ...] = ()):
    yield run, parents
    for child in run.child_runs:
        yield from walk(child, (*parents, run.name))


def test_run_tree_names_metadata_and_nesting(fake_models) -> None:
    scores = dict(zip(SUBPROBLEMS, ['{"difficulty": 0.1}', '{"difficulty": 0.1}', '{"difficulty": 0.9}'],
                      strict=True))
    fake_models(make_script(difficulty=scores))
    tracer = CollectingTracer()
    graph.invoke({"problem": "P?", "problem_id": "gsm8k-7"}, context=fake_context(threshold=0.2, preset="prompted"),
                 config={**run_config(), "callbacks": [tracer]})
    assert len(tracer.roots) == 1
    root = tracer.roots[0]
    assert root.name == "scale"
    runs = list(walk(root))
    llm_runs = [(r, parents) for r, parents in runs if r.run_type == "llm"]
    names = sorted(r.name for r, _ in llm_runs)
    assert names == sorted(["decompose"] * 2 + ["assess"] * 3 + ["solve_system1"] * 2 + ["solve_system2"])

    for run, parents in llm_runs:
        meta = run.extra["metadata"]
        assert meta["problem_id"] == "gsm8k-7"
        assert meta["method"] == "scale"  # inherited from the graph's config
        assert meta["threshold"] == 0.2 and meta["preset"] == "prompted"
        # each model call sits inside the node of its stage, inside the graph run
        assert parents[0] == "scale"
        assert parents[-1] == {"decompose": "decompose", "assess": "assess"}.get(run.name, parents[-1])

    solves = [r for r, _ in llm_runs if r.name.startswith("solve_")]
    for run in solves:
        meta = run.extra["metadata"]
        mode = run.name.removeprefix("solve_")
        assert mode in run.tags and "solve" in run.tags
        assert meta["mode"] == mode
        assert meta["difficulty"] == (0.9 if mode == "system2" else 0.1)
        assert isinstance(meta["subproblem"], int)
    solve_parents = {parents[-1] for r, parents in llm_runs if r.name.startswith("solve_")}
    assert solve_parents == {"solve_fast", "solve_deep"}
    # and nothing is tagged with the other mode by mistake
    assert not any("system2" in r.tags for r in solves if r.name == "solve_system1")

"""What LangGraph Studio shows: the graphs langgraph.json exposes, named nodes, the conditional edges of the
solve loop, and a description for every run setting."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import fields
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from scale_graph.context import Context
from scale_graph.graph.scale import graph as scale_graph

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = json.loads((ROOT / "langgraph.json").read_text())


@pytest.mark.parametrize("name", sorted(LANGGRAPH["graphs"]))
def test_every_graph_in_langgraph_json_loads_as_a_compiled_graph(name) -> None:
    path, _, export = LANGGRAPH["graphs"][name].partition(":")
    spec = importlib.util.spec_from_file_location(f"studio_check_{name}", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(getattr(module, export), CompiledStateGraph)


def test_scale_is_exposed_under_its_name() -> None:
    assert LANGGRAPH["graphs"]["scale"] == "./src/scale_graph/graph/scale.py:graph"
    assert scale_graph.name == "scale"


def test_the_scale_graph_renders_with_named_nodes_and_the_conditional_route() -> None:
    drawn = scale_graph.get_graph(xray=True)
    assert list(drawn.nodes) == ["__start__", "start", "decompose", "select", "assess", "route", "solve_fast",
                                 "solve_deep", "finalize", "__end__"]
    edges = {(e.source, e.target): e.conditional for e in drawn.edges}
    assert edges == {
        ("__start__", "start"): False,
        ("start", "decompose"): True,          # Send × k
        ("start", "select"): True,             # all k gathered (a state edit written as start)
        ("decompose", "select"): False,
        ("select", "assess"): True,            # Send × n (upfront)
        ("select", "route"): True,             # contextual: straight into the loop
        ("assess", "route"): False,
        ("route", "solve_fast"): True,         # Eq. 4: d <= τ
        ("route", "solve_deep"): True,         # Eq. 4: d > τ
        ("route", "assess"): True,             # contextual: score sub-problem i first
        ("route", "finalize"): True,
        ("solve_fast", "route"): False,
        ("solve_deep", "route"): False,
        ("finalize", "__end__"): False,
    }
    assert "solve_deep" in drawn.draw_mermaid()


def test_every_run_setting_carries_a_description_for_studio() -> None:
    schema = scale_graph.get_context_jsonschema()
    assert schema is not None
    for f in fields(Context):
        assert f.metadata.get("description"), f"Context.{f.name} has no description"
        assert schema["properties"][f.name].get("description"), f"{f.name} shows no description in Studio"

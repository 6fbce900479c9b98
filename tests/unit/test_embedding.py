"""Embedding in-process (examples/embed_in_process.py): the compiled SCALE graph as a node of another graph."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from scale_graph.api import run_config
from scale_graph.testing import stage_of
from tests.conftest import fake_context, make_script

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embed_in_process.py"


def load_example():
    spec = importlib.util.spec_from_file_location("embed_in_process", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing needs the module registered to resolve the state's annotations
    spec.loader.exec_module(module)
    return module


def test_scale_runs_as_a_node_and_the_parent_continues(fake_models) -> None:
    fakes = fake_models(make_script())
    tutor = load_example().build_tutor()
    out = tutor.invoke({"problem": "Natalia sold 48 clips..."}, run_config(), context=fake_context())
    assert out["answer"] == "30" and len(out["steps"]) == 3
    assert out["reply"] == "The answer is 30: 3 steps, 3 of them deliberate."
    assert fakes.stages().count("decompose") == 2  # the parent's context (k=2) reached SCALE


def test_the_parent_context_sets_tau_inside_scale(fake_models) -> None:
    fake_models(make_script())
    tutor = load_example().build_tutor()
    out = tutor.invoke({"problem": "p"}, run_config(), context=fake_context(threshold=1.0))
    assert {s["mode"] for s in out["steps"]} == {"system1"}


def test_a_checkpointed_parent_keeps_scale_s_steps_in_its_thread(fake_models) -> None:
    fakes = fake_models(make_script())
    tutor = load_example().build_tutor(checkpointer=InMemorySaver())
    config = run_config(thread_id="parent-1")
    tutor.invoke({"problem": "p"}, config, context=fake_context())
    state = tutor.get_state(config, subgraphs=True)
    assert state.values["answer"] == "30" and not state.next
    assert [stage_of(b) for b in fakes.calls].count("system2") == 3

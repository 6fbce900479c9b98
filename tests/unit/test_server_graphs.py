"""Which graphs ``scale serve`` serves: the package's own config (no checkout needed), or a langgraph.json naming
graphs by file or by module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scale_graph.baselines.context import BaselineContext
from scale_graph.cli import build_parser
from scale_graph.context import Context
from scale_graph.server.config import PACKAGED_GRAPHS, ServerSettings, aegra_config, read_graphs
from scale_graph.server.serve import context_schemas

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_ships_its_graphs_and_serves_them_by_default() -> None:
    assert PACKAGED_GRAPHS.is_file() and PACKAGED_GRAPHS.parent.name == "server"
    assert ServerSettings().langgraph_json == PACKAGED_GRAPHS
    args = build_parser().parse_args(["serve"])
    assert args.config == PACKAGED_GRAPHS  # not ./langgraph.json: the working directory does not matter


def test_the_packaged_graphs_are_the_checkouts_langgraph_json_graphs() -> None:
    """The root langgraph.json (langgraph dev, Studio) and the packaged one name the same graphs, in the same files."""
    packaged = read_graphs(PACKAGED_GRAPHS)["graphs"]
    checkout = read_graphs(ROOT / "langgraph.json")["graphs"]
    assert packaged == checkout
    assert set(packaged) == {"scale", "cot", "majority", "inftythink"}
    for spec in json.loads(PACKAGED_GRAPHS.read_text())["graphs"].values():
        assert "/" not in spec and ".py" not in spec  # module paths: valid wherever the package is installed


def test_a_module_path_is_resolved_to_its_file_not_taken_for_a_file(tmp_path) -> None:
    """Before, ``scale_graph.graph.scale:graph`` became ``<dir>/scale_graph.graph.scale`` (Graph file not found)."""
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"scale": "scale_graph.graph.scale:graph",
                                             "mine": "./graphs/mine.py:app"}}))
    graphs = aegra_config(ServerSettings(langgraph_json=config))["graphs"]
    scale_file, _, export = graphs["scale"].partition(":")
    assert Path(scale_file) == (ROOT / "src" / "scale_graph" / "graph" / "scale.py").resolve() and export == "graph"
    assert graphs["mine"] == f"{tmp_path / 'graphs' / 'mine.py'}:app"


@pytest.mark.parametrize("module", ["no_such_package.graph", "scale_graph.graph.no_such_module"])
def test_a_module_that_is_not_installed_is_a_clear_error(tmp_path, module) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"x": f"{module}:graph"}}))
    with pytest.raises(ValueError, match=r"no Python module|cannot import the graph module") as caught:
        read_graphs(config)
    assert module in str(caught.value) and str(config) in str(caught.value)


def test_run_settings_are_checked_against_every_served_graphs_context() -> None:
    """The baselines' knobs (samples, rounds) are known fields, not refused as unknown settings."""
    assert context_schemas() == [Context, BaselineContext]

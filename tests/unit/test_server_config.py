"""The Aegra configuration and environment ``scale serve`` derives from langgraph.json and its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scale_graph.server.config import (
    DEFAULT_AUTH,
    ServerSettings,
    aegra_config,
    aegra_environment,
    auth_path,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_served_graphs_are_langgraph_json_s_with_absolute_paths() -> None:
    langgraph = json.loads((ROOT / "langgraph.json").read_text())
    config = aegra_config(ServerSettings(langgraph_json=ROOT / "langgraph.json"))
    assert set(config["graphs"]) == set(langgraph["graphs"])
    for spec in config["graphs"].values():
        path, _, export = spec.partition(":")
        assert Path(path).is_absolute() and Path(path).is_file() and export
    assert config["auth"] == {"path": DEFAULT_AUTH}
    assert config["checkpointer"] == {"durability": "sync"}


def test_a_missing_langgraph_json_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        aegra_config(ServerSettings(langgraph_json=tmp_path / "langgraph.json"))


def test_the_environment_enables_the_broker_and_namespaces_redis(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SCALE_DATABASE_URL", raising=False)
    settings = ServerSettings(database_url="postgresql://u@127.0.0.1:5432/threads_a", port=2500)
    env = aegra_environment(settings, tmp_path / "aegra.json")
    assert env["REDIS_BROKER_ENABLED"] == "true"
    assert env["AEGRA_CONFIG"] == str(tmp_path / "aegra.json")
    assert env["AEGRA_CHECKPOINT_DURABILITY"] == "sync"
    assert (env["HOST"], env["PORT"]) == ("127.0.0.1", "2500")
    assert env["WORKER_QUEUE_KEY"] == "scale:threads_a:jobs"
    assert env["REDIS_CHANNEL_PREFIX"] == "scale:threads_a:run:"
    assert ServerSettings().database_url == "postgresql://postgres@127.0.0.1:5432/scale"


def test_file_auth_paths_are_made_absolute_against_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert auth_path("./my_auth.py:auth") == f"{tmp_path / 'my_auth.py'}:auth"
    assert auth_path(DEFAULT_AUTH) == DEFAULT_AUTH

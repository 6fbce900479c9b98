"""The Aegra configuration and environment ``scale serve`` derives from langgraph.json and its settings."""

from __future__ import annotations

import json
import re
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


# --- operator limits -----------------------------------------------------------------------------------------


def test_limits_default_and_come_from_the_environment() -> None:
    from scale_graph.server.config import LIMITS, ServerLimits

    defaults = ServerLimits.from_env({})
    assert {name: defaults[name] for name in LIMITS} == {name: limit.default for name, limit in LIMITS.items()}
    limits = ServerLimits.from_env({"SCALE_SERVER_MAX_CANDIDATES": "32", "SCALE_SERVER_TENANT_RUNS": "2"})
    assert limits["max_candidates"] == 32 and limits["tenant_runs"] == 2
    caps = limits.caps()
    assert caps["candidates"] == (32, "SCALE_SERVER_MAX_CANDIDATES")
    assert caps["system2_max_tokens"] == caps["control_max_tokens"] == (32768, "SCALE_SERVER_MAX_TOKENS_PER_CALL")
    assert caps["max_concurrent_requests"][1] == "SCALE_SERVER_TENANT_MODEL_REQUESTS"


@pytest.mark.parametrize(("env", "says"), [
    ({"SCALE_SERVER_MAX_CANDIDATES": "lots"}, "not a whole number"),
    ({"SCALE_SERVER_TENANT_RUNS": "0"}, "at least 1"),
    ({"SCALE_SERVER_MAX_CANDIDATES": "4"}, "below the default candidates (8)"),
    ({"SCALE_SERVER_MAX_TOKENS_PER_CALL": "1024"}, "below the default system2_max_tokens (2048)"),
])
def test_unusable_limits_stop_the_server_naming_the_variable(env, says) -> None:
    from scale_graph.server.config import LimitsError, ServerLimits

    with pytest.raises(LimitsError, match=re.escape(says)) as caught:
        ServerLimits.from_env(env)
    assert next(iter(env)) in str(caught.value)


def test_a_bad_limit_does_not_break_other_commands(monkeypatch) -> None:
    from scale_graph.cli import build_parser

    monkeypatch.setenv("SCALE_SERVER_MAX_CANDIDATES", "lots")
    assert build_parser().parse_args(["solve", "1+1?"]).problem == "1+1?"
    assert ServerSettings().limits is None  # read when the server starts

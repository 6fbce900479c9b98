"""The scale-out deployment: the per-worker run limit ``scale serve`` hands Aegra, and deploy/compose.yaml (docker
is not available here, so the file is parsed and its services are checked to refer to each other consistently)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scale_graph.server.auth import KEYS_ENV
from scale_graph.server.config import LIMITS, LimitsError, ServerLimits, ServerSettings, aegra_environment

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


# --- the per-worker limit --------------------------------------------------------------------------------------


def test_runs_executed_at_once_are_one_worker_loop_with_the_configured_places(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SCALE_SERVER_CONCURRENT_RUNS", raising=False)
    env = aegra_environment(ServerSettings(), tmp_path / "aegra.json")
    assert (env["WORKER_COUNT"], env["N_JOBS_PER_WORKER"]) == ("1", "30")  # Aegra's default capacity, 3 x 10
    monkeypatch.setenv("SCALE_SERVER_CONCURRENT_RUNS", "4")
    assert aegra_environment(ServerSettings(), tmp_path / "aegra.json")["N_JOBS_PER_WORKER"] == "4"
    limits = ServerLimits.from_env({"SCALE_SERVER_CONCURRENT_RUNS": "7"})
    settings = ServerSettings(limits=limits)
    assert aegra_environment(settings, tmp_path / "aegra.json")["N_JOBS_PER_WORKER"] == "7"


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_an_unusable_run_limit_stops_the_server_naming_the_variable(value) -> None:
    with pytest.raises(LimitsError, match="SCALE_SERVER_CONCURRENT_RUNS"):
        ServerLimits.from_env({"SCALE_SERVER_CONCURRENT_RUNS": value})


# --- deploy/compose.yaml --------------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
SERVICE_KEYS = {"build", "image", "command", "environment", "depends_on", "healthcheck", "stop_grace_period",
                "restart", "ports", "volumes", "deploy", "ipc"}
"""The Compose service keys this file may use (a typo would otherwise pass unnoticed)."""


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``, with ``values`` as the environment."""
    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.groups()
        if values.get(name):
            return values[name]
        if kind == "-":
            return arg
        raise AssertionError(f"${{{name}}} is required: {arg}")

    return VARIABLE.sub(one, text)


def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml as Compose reads it, with the variables of .env.example filled in."""
    text = (DEPLOY / "compose.yaml").read_text()
    values = {name: f"value-of-{name.lower()}" for name in env_example()}
    values["SCALE_SERVER_API_KEYS"] = "ops:" + "k" * 32
    return yaml.safe_load(interpolate(text, values))


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("command", [])[:2] == ["scale", "serve"]}


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_every_variable_is_documented_in_env_example_or_has_a_default() -> None:
    documented = set(env_example())
    for name, kind, _ in VARIABLE.findall((DEPLOY / "compose.yaml").read_text()):
        assert name in documented or kind == "-", name
    with pytest.raises(AssertionError, match=r"POSTGRES_PASSWORD\} is required"):
        interpolate((DEPLOY / "compose.yaml").read_text(), {})


def test_the_file_uses_only_known_compose_keys_and_declares_its_volumes(compose) -> None:
    assert set(compose) - {"name", "services", "volumes"} <= {k for k in compose if k.startswith("x-")}
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), (name, source)
            else:
                assert source in declared, (name, source)
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in compose["services"], (name, target)
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in compose["services"][target], (name, target)


def test_two_or_more_workers_share_one_database_one_redis_and_one_model_url(compose) -> None:
    services = compose["services"]
    found = workers(compose)
    assert len(found) >= 2
    envs = [w["environment"] for w in found.values()]
    assert all(env == envs[0] for env in envs)  # the same database, Redis, model and keys: one server
    env = envs[0]

    database = urlsplit(env["SCALE_DATABASE_URL"])
    postgres = services[database.hostname]
    assert postgres["image"].startswith("postgres:") and database.port == 5432
    assert database.path == f"/{postgres['environment']['POSTGRES_DB']}"
    assert database.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert services[urlsplit(env["SCALE_REDIS_URL"]).hostname]["image"].startswith("redis:")

    model = urlsplit(env["SCALE_BASE_URL"])
    vllm = services[model.hostname]["command"]
    assert str(model.port) == flag(vllm, "--port") and model.path == "/v1"
    assert env["SCALE_MODEL"] == flag(vllm, "--model")
    assert int(flag(vllm, "--data-parallel-size")) >= 2  # one URL over several GPUs
    assert "--enable-prefix-caching" in vllm

    for name, worker in found.items():
        assert set(worker["depends_on"]) == {database.hostname, urlsplit(env["SCALE_REDIS_URL"]).hostname,
                                             model.hostname}, name
        assert flag(worker["command"], "--host") == "0.0.0.0", name
    # the settings are ones scale serve knows and accepts
    known = {"SCALE_DATABASE_URL", "SCALE_REDIS_URL", "SCALE_BASE_URL", "SCALE_MODEL", KEYS_ENV}
    known |= {limit.env for limit in LIMITS.values()}
    assert set(env) <= known, set(env) - known
    assert ServerLimits.from_env(env)["concurrent_runs"] == int(env["SCALE_SERVER_CONCURRENT_RUNS"])


def test_the_load_balancer_sends_to_every_worker_and_nothing_else(compose) -> None:
    services = compose["services"]
    found = workers(compose)
    lb = services["lb"]
    config = (DEPLOY / "nginx.conf").read_text()
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    upstream = re.search(r"upstream scale \{(.*?)\}", config, re.DOTALL)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server ([\w.-]+:\d+)", upstream.group(1), re.MULTILINE))
    assert servers == {f"{name}:{flag(w['command'], '--port')}" for name, w in found.items()}
    assert re.search(r"proxy_pass http://scale;", config)
    listen = re.search(r"listen (\d+);", config)
    assert listen is not None and lb["ports"] == [f"{listen.group(1)}:{listen.group(1)}"]
    assert set(lb["depends_on"]) == set(found)
    assert "proxy_buffering off;" in config  # run streams are server-sent events
    assert "non_idempotent" not in config  # a POST that creates a run is never retried on another worker


def test_workers_are_built_from_this_checkout_and_drain_before_they_are_killed(compose) -> None:
    for name, worker in workers(compose).items():
        build = worker["build"]
        dockerfile = (DEPLOY / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), name
        copied = re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), re.MULTILINE)
        for sources in copied:
            for source in sources.split():
                assert (DEPLOY / build["context"] / source).exists(), source
        assert (DEPLOY / build["context"] / flag(worker["command"], "--config").removeprefix("/app/")).is_file()
        # Aegra drains for WORKER_DRAIN_TIMEOUT (30 s) on SIGTERM, then hands the rest back to the queue
        assert int(worker["stop_grace_period"].removesuffix("s")) > 30, name

"""Fixtures that start real components. The embedded model is started once per test session; PostgreSQL
databases and Redis keys are made per test (or module) and removed afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from scale_graph.local import EmbeddedServer


@pytest.fixture(scope="session")
def embedded_server():
    """The real embedded llama.cpp server (Qwen2.5-Coder-0.5B Q4_K_M), 4 slots on 127.0.0.1."""
    with EmbeddedServer() as server:
        yield server


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    """Environment for running the ``scale`` CLI in a subprocess, isolated from the user's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_") or k == "SCALE_CACHE_DIR"}
    env["SCALE_HOME"] = str(tmp_path / "home")
    return env


# --- PostgreSQL, Redis and subprocesses of our own ---------------------------------------------------------

POSTGRES_URL = os.environ.get("SCALE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""An admin connection to the test PostgreSQL (the machine starts one on 127.0.0.1:5432, trust auth)."""
ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120
"""Seconds to wait for ``scale serve`` to pass its self-check."""

REDIS_URL = os.environ.get("SCALE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The test Redis (the machine starts one on 127.0.0.1:6379)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new database with a random name on the test PostgreSQL; dropped afterwards (its URL)."""
    import psycopg

    name = f"scale_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {POSTGRES_URL} (set SCALE_TEST_POSTGRES_URL): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own."""
    with postgres_database() as url:
        yield url


def redis_client():
    """A client of the test Redis; fails the test with a clear message when Redis is not there."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL} (set SCALE_TEST_REDIS_URL): {exc}")
    return client


def delete_redis_keys(prefix: str) -> None:
    """Delete the keys under ``prefix`` (what one test server wrote)."""
    client = redis_client()
    with closing(client):
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            client.delete(key)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a process we started, then SIGKILL it if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def answers_200(url: str, proc: subprocess.Popen, log: Path) -> bool:
    """True once ``GET url`` answers 200; fails the test with the log's tail if ``proc`` has exited."""
    if proc.poll() is not None:
        pytest.fail(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``condition()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- scale serve -------------------------------------------------------------------------------------------

def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALE_", "AEGRA_", "REDIS_", "DATABASE_"))}
    return {**env, "SCALE_REDIS_URL": os.environ.get("SCALE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), **extra}


def start_server(port: int, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "scale_graph.cli", "serve", "--port", str(port),
                                 "--config", str(ROOT / "langgraph.json"), "--log-level", "WARNING", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def ready(url: str, proc: subprocess.Popen, log: Path) -> bool:
    """True once /health answers 200 (the gate opens only after the self-check)."""
    return answers_200(f"{url}/health", proc, log)


FAST_RECOVERY = {"LEASE_DURATION_SECONDS": "6", "HEARTBEAT_INTERVAL_SECONDS": "2", "REAPER_INTERVAL_SECONDS": "2"}
"""Aegra's lease timing, shortened so a dead worker's run is taken up again within seconds (default ~50 s)."""

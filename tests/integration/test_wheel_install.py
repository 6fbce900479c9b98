"""``pip install 'scale-graph[server]' && scale serve`` outside a checkout: the built wheel, installed into a fresh
venv with its dependencies from the package index, serves the graphs it ships (no langgraph.json anywhere), and a
run solves a problem on the scripted fake model, on a PostgreSQL database of the test's own and Redis.

Takes about 2 minutes on 2 cores, most of it ``pip install`` (about 90 s with pip's download cache warm)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_sync_client

from scale_graph.testing import FakeOpenAIServer, scale_script, stage_of
from tests.integration.conftest import (
    ROOT,
    STARTUP_TIMEOUT,
    answers_200,
    delete_redis_keys,
    free_port,
    postgres_database,
    redis_client,
    server_env,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration
PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"
INSTALL_TIMEOUT = 480
"""Seconds for ``pip install`` of the wheel and its dependencies into the fresh venv."""


def python312() -> str:
    """The Python 3.12 the project's venv is made with (``scripts/find-python``)."""
    found = subprocess.run([str(ROOT / "scripts" / "find-python")], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def build_wheel(out: Path) -> Path:
    """The wheel of the working tree, built from a copy of what a build reads (no stale build/ or egg-info)."""
    source = out / "source"
    source.mkdir()
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    dist = out / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = dist.glob("scale_graph-*.whl")
    return wheel


def test_the_installed_wheel_serves_and_solves_outside_a_checkout(tmp_path) -> None:
    redis_client().close()  # fail clearly if Redis is missing
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "fresh"
    subprocess.run([python312(), "-m", "venv", str(venv)], check=True, timeout=120)
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    started = time.monotonic()
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[server]"],
                               capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=clean)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    print(f"pip install of the wheel with the server extra: {time.monotonic() - started:.0f} s")

    elsewhere = tmp_path / "elsewhere"  # no langgraph.json, no checkout, nothing on PYTHONPATH
    elsewhere.mkdir()
    # the installed package is what runs, and the graphs it serves are its own files
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import scale_graph; from scale_graph.server.config import ServerSettings, aegra_config;"
         "print(scale_graph.__file__); print(*aegra_config(ServerSettings())['graphs'].values(), sep='\\n')"],
        capture_output=True, text=True, cwd=elsewhere, env=clean, timeout=120)
    assert where.returncode == 0, where.stderr
    site = (venv / "lib").resolve()
    lines = where.stdout.split()
    assert len(lines) == 5 and all(Path(line.partition(":")[0]).resolve().is_relative_to(site) for line in lines), \
        where.stdout

    key = secrets.token_urlsafe(24)
    log = tmp_path / "server.log"
    with FakeOpenAIServer(scale_script) as fake, postgres_database() as database_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = server_env(SCALE_SERVER_API_KEYS=f"tester:{key}", SCALE_DATABASE_URL=database_url,
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model")
        env = {k: v for k, v in env.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        with log.open("w") as out:
            proc = subprocess.Popen([str(venv / "bin" / "scale"), "serve", "--port", str(port), "--log-level",
                                     "WARNING"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=elsewhere)
        try:
            wait_for(lambda: answers_200(f"{url}/ok", proc, log), STARTUP_TIMEOUT, "the installed scale serve", 0.5)
            assert httpx.get(f"{url}/ok", timeout=10).json() == {"ok": True}
            assert "graphs scale, cot, majority, inftythink" in log.read_text()
            with get_sync_client(url=url, api_key=key) as client:
                thread = client.threads.create()
                result = client.runs.wait(thread["thread_id"], "scale", input={"problem": PROBLEM},
                                          context={"candidates": 2})
            assert result["answer"] == "20" and [s["mode"] for s in result["steps"]] == ["system1", "system2"]
            assert [stage_of(b) for b in fake.requests].count("decompose") == 2
        finally:
            stop_process(proc)
            delete_redis_keys(f"scale:{database_url.rsplit('/', 1)[1]}:")

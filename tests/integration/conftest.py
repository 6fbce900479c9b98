"""Fixtures that start real components. The embedded model is started once per test session."""

from __future__ import annotations

import os

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

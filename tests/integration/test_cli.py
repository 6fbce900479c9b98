"""The ``scale`` command as a user runs it (a subprocess), against the fake server or nothing at all."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from scale_graph.testing import FakeOpenAIServer

pytestmark = pytest.mark.integration
PROBLEM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")


def scale(*args: str, env: dict[str, str], timeout: float = 120, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "scale_graph.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, input=stdin)


@pytest.fixture
def fake():
    with FakeOpenAIServer() as server:
        yield server


def test_solve_json_prints_the_output_schema(fake, cli_env) -> None:
    proc = scale("solve", "--json", "--candidates", "2", "--base-url", fake.base_url, PROBLEM, env=cli_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answer"] == "20"
    assert len(out["steps"]) == 2
    for step in out["steps"]:
        assert 0 <= step["difficulty"] <= 1 and step["mode"] in {"system1", "system2"}
        assert step["completion_tokens"] > 0 and step["prompt_tokens"] > 0
    assert set(out["usage"]) == {"decompose", "select", "assess", "solve"}
    assert out["usage"]["select"]["calls"] == 0  # both candidates were the same: nothing to choose
    assert "sub-problem 1: solved by" in proc.stderr  # live progress on stderr, JSON alone on stdout


@pytest.mark.parametrize(("threshold", "mode"), [("1", "system1"), ("-1", "system2")])
def test_threshold_forces_one_mode(fake, cli_env, threshold, mode) -> None:
    proc = scale("solve", "--json", "--quiet", "--threshold", threshold, "--base-url", fake.base_url, PROBLEM,
                 env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert {s["mode"] for s in json.loads(proc.stdout)["steps"]} == {mode}


def test_table_output_and_stdin(fake, cli_env) -> None:
    proc = scale("solve", "-", "--base-url", fake.base_url, env=cli_env, stdin=PROBLEM)
    assert proc.returncode == 0, proc.stderr
    assert "SCALE steps" in proc.stdout and "answer: 20" in proc.stdout
    assert "system1" in proc.stdout and "system2" in proc.stdout


def test_unreachable_endpoint_exits_nonzero_naming_the_url(cli_env) -> None:
    cli_env["SCALE_BASE_URL"] = "http://127.0.0.1:9"
    start = time.monotonic()
    proc = scale("solve", "1+1?", env=cli_env, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    assert "http://127.0.0.1:9" in proc.stderr


def test_empty_problem_exits_2(cli_env) -> None:
    proc = scale("solve", "", env=cli_env)
    assert proc.returncode == 2
    assert "empty" in proc.stderr

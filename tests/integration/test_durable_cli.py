"""Durable CLI threads for real: ``kill -9`` a ``scale solve`` mid-run, then ``scale resume`` finishes it, and the
fake model server's request log shows that no finished step was asked again. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from scale_graph.testing import FakeOpenAIServer, Reply, stage_of
from tests.conftest import SUBPROBLEMS, current_subproblem, make_script
from tests.integration.conftest import postgres_database, wait_for

pytestmark = pytest.mark.integration
PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether?"
SOLVE_SECONDS = 1.0


def scale(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scale_graph.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def start_scale(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "scale_graph.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def asked(requests: list[dict]) -> list[tuple[str, int | None]]:
    """(stage, sub-problem index) of each request; the index only for assessments and solves."""
    out = []
    for body in requests:
        stage = stage_of(body)
        index = None
        if stage in {"assess", "system1", "system2"}:  # the last sub-problem asked is the problem itself
            sub = current_subproblem(body)
            index = SUBPROBLEMS.index(sub) if sub in SUBPROBLEMS else len(SUBPROBLEMS) - 1
        out.append(("solve" if stage in {"system1", "system2"} else stage, index))
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """Where the threads are kept: a SQLite file, or a PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        yield str(tmp_path / "threads.sqlite")
        return
    with postgres_database() as url:
        yield url


def test_kill_during_the_solve_loop_then_resume(cli_env, store, tmp_path) -> None:
    plain = make_script()

    def slow_solves(body):
        reply = plain(body)
        if stage_of(body) in {"system1", "system2"}:
            reply.delay = SOLVE_SECONDS
        return reply

    with FakeOpenAIServer(slow_solves) as fake:
        flags = ["--checkpointer", store, "--quiet"]
        proc = start_scale("solve", PROBLEM, "--thread", "k1", "--candidates", "2", "--base-url", fake.base_url,
                           *flags, env=cli_env, log=tmp_path / "solve.log")
        try:
            # the 2nd solve request has arrived: the 1st solve has finished (its reply came before it)
            wait_for(lambda: [s for s, _ in asked(fake.requests)].count("solve") >= 2, 60, "the 2nd solve")
        finally:
            kill9(proc)
        before = asked(fake.requests)
        assert Counter(before) == Counter([("decompose", None)] * 2 + [("assess", i) for i in range(3)]
                                          + [("solve", 0), ("solve", 1)])

        status = scale("threads", "--json", "--checkpointer", store, env=cli_env)
        [listed] = json.loads(status.stdout)
        assert (listed["thread_id"], listed["status"], listed["steps_done"]) == ("k1", "incomplete", 1)

        resumed = scale("resume", "k1", "--json", *flags, env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)
        assert result["answer"] == "30" and len(result["steps"]) == 3

        again = asked(fake.requests[len(before):])
        assert again == [("solve", 1), ("solve", 2)]  # the unfinished solve and the rest; nothing finished

        shown = scale("show", "k1", "--checkpointer", store, env=cli_env)
        assert "thread k1: done" in shown.stdout


def test_kill_during_the_decomposition_fan_out_keeps_the_finished_candidates(cli_env, tmp_path) -> None:
    """Within one superstep too: of k=3 concurrent decompositions, the one that finished is not asked again."""
    plain = make_script()
    arrivals = 0
    lock = threading.Lock()

    def first_candidate_fast(body):
        nonlocal arrivals
        reply = plain(body)
        if stage_of(body) == "decompose":
            with lock:
                arrivals += 1
                reply.delay = 0.0 if arrivals == 1 else 30.0
        return reply

    store = str(tmp_path / "threads.sqlite")
    with FakeOpenAIServer(first_candidate_fast) as fake:
        proc = start_scale("solve", PROBLEM, "--thread", "k2", "--candidates", "3", "--base-url", fake.base_url,
                           "--checkpointer", store, "--quiet", env=cli_env, log=tmp_path / "solve.log")
        try:
            wait_for(lambda: len(fake.requests) >= 3, 60, "3 decomposition requests")
            time.sleep(1.0)  # the first reply was immediate; its result is saved within milliseconds
        finally:
            kill9(proc)
        fake.script = plain
        resumed = scale("resume", "k2", "--json", "--checkpointer", store, "--quiet", env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        stages = [stage_of(b) for b in fake.requests[3:]]
        assert stages.count("decompose") == 2  # only the two that had not finished
        assert json.loads(resumed.stdout)["answer"] == "30"


def test_solve_refuses_to_reuse_a_thread_and_names_it(cli_env, tmp_path) -> None:
    store = str(tmp_path / "threads.sqlite")
    with FakeOpenAIServer() as fake:
        args = ["solve", "2+2?", "--thread", "same", "--base-url", fake.base_url, "--checkpointer", store, "--quiet"]
        assert scale(*args, env=cli_env).returncode == 0
        again = scale(*args, env=cli_env)
    assert again.returncode == 2 and "thread same already exists" in again.stderr


def test_stop_mid_run_prints_how_to_resume(cli_env, tmp_path) -> None:
    """A run that cannot finish (endpoint gone for good) keeps its steps and says how to continue."""
    plain = make_script()
    store = str(tmp_path / "threads.sqlite")

    def solves_refused(body):
        return Reply(status=400) if stage_of(body) in {"system1", "system2"} else plain(body)

    with FakeOpenAIServer(solves_refused) as fake:
        failed = scale("solve", PROBLEM, "--thread", "t3", "--base-url", fake.base_url, "--checkpointer", store,
                       "--quiet", env=cli_env)
        assert failed.returncode == 1
        assert "scale resume t3" in failed.stderr and "HTTP 400" in failed.stderr
        fake.script = plain
        done = scale("resume", "t3", "--checkpointer", store, "--quiet", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "answer: 30" in done.stdout

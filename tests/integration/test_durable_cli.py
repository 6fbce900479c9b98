"""Durable CLI threads for real: ``kill -9`` or Ctrl-C a ``scale solve`` mid-run, then ``scale resume`` finishes it,
and the fake model server's request log shows that no finished step was asked again; two resumes of one thread at
once: one runs, the other is refused naming it. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
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


# --- Ctrl-C, and kill -9 between a step's result and its checkpoint -------------------------------------------


def gated_second_solve(gate: threading.Event):
    """The scripted model, with the 2nd sub-problem's solve held until ``gate`` is set (at most 60 s)."""
    plain = make_script()

    def script(body):
        if stage_of(body) in {"system1", "system2"} and asked([body]) == [("solve", 1)]:
            gate.wait(60)
        return plain(body)

    return script


def solves_asked(fake: FakeOpenAIServer) -> int:
    return [s for s, _ in asked(fake.requests)].count("solve")


def test_ctrl_c_mid_solve_then_show_says_incomplete_and_resume_asks_only_the_rest(cli_env, store, tmp_path) -> None:
    """Ctrl-C while sub-problem 2 is being solved. Before: exit 130 with an empty `error:` line; `scale show` said
    done (2/3 steps, no answer) and `scale resume` refused ("has finished")."""
    gate = threading.Event()
    log = tmp_path / "solve.log"
    with FakeOpenAIServer(gated_second_solve(gate)) as fake:
        flags = ["--checkpointer", store]
        proc = start_scale("solve", PROBLEM, "--thread", "c1", "--candidates", "2", "--base-url", fake.base_url,
                           *flags, env=cli_env, log=log)
        try:
            wait_for(lambda: solves_asked(fake) == 2, 60, "the 2nd solve request")
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: "interrupting" in log.read_text(), 30, "the interrupt to be noted")
        finally:
            gate.set()  # the request in flight is answered: its result is kept
        assert proc.wait(timeout=60) == 130
        printed = log.read_text()
        assert "interrupted: the finished steps are kept; `scale resume c1` continues the run" in printed
        assert "error:" not in printed

        listed = scale("threads", "--json", "--checkpointer", store, env=cli_env)
        [thread] = json.loads(listed.stdout)
        assert (thread["status"], thread["steps_done"], thread["answer"]) == ("incomplete", 2, None)
        assert "thread c1: incomplete" in scale("show", "c1", *flags, env=cli_env).stdout

        before = len(fake.requests)
        resumed = scale("resume", "c1", "--json", "--quiet", *flags, env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["answer"] == "30"
        assert asked(fake.requests[before:]) == [("solve", 2)]  # only the sub-problem not yet solved
        assert "thread c1: done" in scale("show", "c1", *flags, env=cli_env).stdout

        again = scale("resume", "c1", "--quiet", *flags, env=cli_env)
        assert again.returncode == 0 and "has finished: nothing to resume" in again.stderr
        assert len(fake.requests) == before + 1


def test_a_second_ctrl_c_stops_at_once_and_resume_asks_the_step_that_was_in_flight(cli_env, tmp_path) -> None:
    gate = threading.Event()
    log = tmp_path / "solve.log"
    store = str(tmp_path / "threads.sqlite")
    with FakeOpenAIServer(gated_second_solve(gate)) as fake:
        proc = start_scale("solve", PROBLEM, "--thread", "c2", "--candidates", "2", "--base-url", fake.base_url,
                           "--checkpointer", store, env=cli_env, log=log)
        try:
            wait_for(lambda: solves_asked(fake) == 2, 60, "the 2nd solve request")
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: "interrupting" in log.read_text(), 30, "the interrupt to be noted")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 130  # not held by the request in flight
        finally:
            gate.set()
            if proc.poll() is None:
                kill9(proc)
        assert "stopped at once: `scale resume c2` continues the run" in log.read_text()

        fake.script = make_script()
        listed = scale("threads", "--json", "--checkpointer", store, env=cli_env)
        [thread] = json.loads(listed.stdout)
        assert (thread["status"], thread["steps_done"]) == ("incomplete", 1)
        before = len(fake.requests)
        resumed = scale("resume", "c2", "--json", "--quiet", "--checkpointer", store, env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        assert asked(fake.requests[before:]) == [("solve", 1), ("solve", 2)]


def test_kill_9_between_a_steps_result_and_the_next_checkpoint(cli_env, postgres_url, tmp_path) -> None:
    """The result of sub-problem 2 is saved (a pending write) and the process is killed before the checkpoint that
    takes it in: the test holds PostgreSQL's `checkpoints` table, so that checkpoint waits while the write goes
    through; the killed process's session is ended before the table is let go. (SQLite locks the whole file, so there
    the write would wait too; Ctrl-C above makes the same state on both stores.) Before: `scale show` said done and
    `scale resume` refused."""
    import psycopg

    gate = threading.Event()
    with FakeOpenAIServer(gated_second_solve(gate)) as fake, \
            closing(psycopg.connect(postgres_url, autocommit=True)) as watch:
        flags = ["--checkpointer", postgres_url, "--quiet"]
        proc = start_scale("solve", PROBLEM, "--thread", "k3", "--candidates", "2", "--base-url", fake.base_url,
                           *flags, env=cli_env, log=tmp_path / "solve.log")
        try:
            wait_for(lambda: solves_asked(fake) == 2, 60, "the 2nd solve request")
            with closing(psycopg.connect(postgres_url)) as holder:  # one transaction, held until the kill
                holder.execute("LOCK TABLE checkpoints IN EXCLUSIVE MODE")  # reads pass, writes wait
                gate.set()

                def results_saved() -> bool:
                    row = watch.execute("SELECT count(*) FROM checkpoint_writes WHERE thread_id = 'k3' "
                                        "AND channel = 'steps'").fetchone()
                    return row is not None and row[0] == 2

                def checkpoint_waiting() -> bool:
                    row = watch.execute("SELECT count(*) FROM pg_locks WHERE NOT granted "
                                        "AND relation = 'checkpoints'::regclass").fetchone()
                    return row is not None and row[0] > 0

                wait_for(results_saved, 30, "the 2nd step's result to be saved")
                wait_for(checkpoint_waiting, 30, "the next checkpoint to wait for the table")
                kill9(proc)
                # The checkpoint's INSERT had reached the server: end its session too, as if the process had died
                # before sending it (otherwise it would commit once the table is let go).
                watch.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE NOT granted "
                              "AND relation = 'checkpoints'::regclass")
                wait_for(lambda: not checkpoint_waiting(), 30, "the killed session to end")
                holder.rollback()
        finally:
            gate.set()
            if proc.poll() is None:
                kill9(proc)

        listed = scale("threads", "--json", "--checkpointer", postgres_url, env=cli_env)
        [thread] = json.loads(listed.stdout)
        assert (thread["status"], thread["steps_done"], thread["next"]) == ("incomplete", 2, [])
        assert "thread k3: incomplete" in scale("show", "k3", "--checkpointer", postgres_url, env=cli_env).stdout

        before = len(fake.requests)
        resumed = scale("resume", "k3", "--json", *flags, env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["answer"] == "30"
        assert asked(fake.requests[before:]) == [("solve", 2)]


# --- one run at a time per thread ----------------------------------------------------------------------------


def test_two_resumes_of_one_thread_at_once_one_runs_one_is_refused(cli_env, store, tmp_path) -> None:
    """Before: both ran, every remaining step was asked twice and the history forked silently."""
    plain = make_script()
    gate = threading.Event()

    def solves_refused(body):
        return Reply(status=400) if stage_of(body) in {"system1", "system2"} else plain(body)

    def solves_held(body):
        if stage_of(body) in {"system1", "system2"}:
            gate.wait(60)  # the winner stays in its run until the other has been refused
        return plain(body)

    with FakeOpenAIServer(solves_refused) as fake:
        flags = ["--checkpointer", store, "--quiet", "--json"]
        failed = scale("solve", PROBLEM, "--thread", "r1", "--candidates", "2", "--base-url", fake.base_url, *flags,
                       env=cli_env)
        assert failed.returncode == 1 and "scale resume r1" in failed.stderr
        fake.script, before = solves_held, len(fake.requests)

        command = [sys.executable, "-m", "scale_graph.cli", "resume", "r1", *flags]
        both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
                for _ in range(2)]
        output: dict[int, tuple[str, str]] = {}
        try:
            wait_for(lambda: any(p.poll() is not None for p in both), 60, "one resume to be refused")
            [refused] = [p for p in both if p.poll() is not None]
            [winner] = [p for p in both if p is not refused]
            output[refused.pid] = refused.communicate(timeout=10)
            assert refused.returncode == 4, output[refused.pid]
            assert f"thread r1 is being run by another process: pid {winner.pid} on host {socket.gethostname()}" \
                in output[refused.pid][1]
            assert winner.poll() is None  # still in its run
        finally:
            gate.set()
            for p in both:
                if p.pid not in output:
                    output[p.pid] = p.communicate(timeout=60)
        out, err = output[winner.pid]
        assert winner.returncode == 0, err
        assert json.loads(out)["answer"] == "30"
        assert asked(fake.requests[before:]) == [("solve", 0), ("solve", 1), ("solve", 2)]  # each asked once

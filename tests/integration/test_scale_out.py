"""Two ``scale serve`` workers on one PostgreSQL database and one Redis are one server (docs/deploy.md, Scale-out).

Worker A and worker B run on their own ports; the database (this test's own, dropped afterwards) and the Redis keys
(under the database's prefix, deleted afterwards) are shared. Each executes at most 3 runs at once
(``SCALE_SERVER_CONCURRENT_RUNS``). Every run is created through A. Who executes a run is read from Aegra's lease
(``runs.claimed_by`` names the holder ``<host>-<pid>-worker-<n>``), polled while the runs go.

1. Runs created through A are executed by B too: A holds 3 at most, B takes the rest from the shared queue.
2. A is killed with SIGKILL while it holds runs part-way through. B's lease reaper re-queues them once A's leases
   expire (lease timing shortened to seconds), B resumes each from its last checkpoint (nothing checkpointed
   before the kill is asked of the model again), and every run finishes with its own correct answer.

The fake model answers "What is A + B? [tag]" with A + B, so an answer from the wrong run or a lost step shows.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk import get_sync_client

from scale_graph.testing import (
    FakeOpenAIServer,
    Reply,
    current_subproblem,
    earlier_solutions,
    scale_script,
    stage_of,
    user_text,
)
from tests.integration.conftest import (
    FAST_RECOVERY,
    STARTUP_TIMEOUT,
    delete_redis_keys,
    free_port,
    postgres_database,
    ready,
    redis_client,
    server_env,
    start_server,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

PER_WORKER = 3
"""SCALE_SERVER_CONCURRENT_RUNS of each worker."""
RUNS = 12
"""Runs per part."""
CONTEXT = {"candidates": 2}
RUN_TIMEOUT = 90
PROBLEM = re.compile(r"What is (\d+) \+ (\d+)\? \[(\w+-\d+)\]")
ENV = {
    **FAST_RECOVERY,  # a dead worker's lease expires after 6 s; every reaper looks every 2 s
    "STUCK_PENDING_THRESHOLD_SECONDS": "10",  # a run popped from the queue by A but not yet leased: back in 10 s
    "SCALE_SERVER_CONCURRENT_RUNS": str(PER_WORKER),
    # one key stands in for many clients: its per-tenant limits are not what this test is about
    "SCALE_SERVER_TENANT_RUNS": "100", "SCALE_SERVER_TENANT_MODEL_REQUESTS": "100",
}
ORDER = {"decompose": 0, "select": 1, "assess": 2}
"""The order of a run's stages (solve i comes after them, as 3 + i)."""


def problem(tag: str, i: int) -> tuple[str, str]:
    """A problem and its answer."""
    a, b = 100 + 7 * i, 3 + 11 * i
    return f"What is {a} + {b}? [{tag}-{i}]", str(a + b)


class Model:
    """scale_script's replies, with the right sum as the last solve's answer, after a short delay; logs every
    request as (time, run tag, stage, sub-problem index)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[float, str, str, int | str]] = []

    def __call__(self, body: dict[str, Any]) -> Reply:
        reply = scale_script(body)
        stage = stage_of(body)
        match = PROBLEM.search(user_text(body))
        index: int | str = "*"
        reply.delay = 0.2
        if stage in {"system1", "system2"}:
            index = earlier_solutions(body)
            reply.delay = 0.8
            if index == 1 and match:  # the last sub-problem: the problem itself (final_step "question")
                reply.content = f"Adding them gives \\boxed{{{int(match.group(1)) + int(match.group(2))}}}"
        elif stage == "assess":  # the first sub-problem, or the last one: the problem itself
            index = 0 if "first quantity" in current_subproblem(body) else 1
        with self.lock:
            self.log.append((time.time(), match.group(3) if match else "?", stage, index))
        return reply

    def requests(self, tag: str) -> list[tuple[float, str, int | str]]:
        with self.lock:
            return [(t, stage, index) for t, run, stage, index in self.log if run == tag]


@dataclass
class Worker:
    name: str
    port: int
    proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Leases:
    """Polls Aegra's runs table: which workers have held each run's lease, and who holds it now."""

    dsn: str
    pids: dict[int, str]
    held_by: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    holder: dict[str, str | None] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute("SELECT run_id, status, claimed_by FROM runs").fetchall()
                with self.lock:
                    for run_id, status, claimed_by in rows:
                        pid = re.search(r"-(\d+)-worker-\d+$", claimed_by or "")
                        name = self.pids.get(int(pid.group(1))) if pid else None
                        self.holder[run_id] = name
                        self.status[run_id] = status
                        if name is not None:
                            self.held_by[run_id].add(name)
                self.stop.wait(0.1)

    def holding(self, name: str) -> set[str]:
        with self.lock:
            return {run_id for run_id, holder in self.holder.items() if holder == name}

    def owners(self, run_id: str) -> set[str]:
        with self.lock:
            return set(self.held_by.get(run_id, ()))

    def finished(self, run_ids: Iterator[str] | set[str] | dict[str, Any]) -> bool:
        with self.lock:
            return all(self.status.get(r) in {"success", "error", "interrupted"} for r in run_ids)


@contextmanager
def two_workers(tmp_path: Path) -> Iterator[tuple[Worker, Worker, str, Model, str, Leases]]:
    """Workers A and B on one database and one Redis, the fake model, the key, and the lease watcher."""
    redis_client().close()  # fail clearly if Redis is missing
    model = Model()
    with FakeOpenAIServer(model) as fake, postgres_database() as database_url:
        key = secrets.token_urlsafe(24)
        env = server_env(SCALE_SERVER_API_KEYS=f"tester:{key}", SCALE_DATABASE_URL=database_url,
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model", **ENV)
        workers = [Worker("A", free_port()), Worker("B", free_port())]
        leases: Leases | None = None
        watcher: threading.Thread | None = None
        try:
            for worker in workers:  # one after the other: the first one migrates the new database
                worker.proc = start_server(worker.port, env, tmp_path / f"worker-{worker.name}.log")
                wait_for(lambda w=worker: ready(w.url, w.proc, tmp_path / f"worker-{w.name}.log"), STARTUP_TIMEOUT,
                         f"worker {worker.name} to pass its self-check", 0.5)
            leases = Leases(database_url, {w.proc.pid: w.name for w in workers})
            watcher = threading.Thread(target=leases.run, name="leases", daemon=True)
            watcher.start()
            yield workers[0], workers[1], key, model, database_url, leases
        finally:
            if leases is not None and watcher is not None:
                leases.stop.set()
                watcher.join(timeout=10)
            for worker in workers:
                if worker.proc is not None:
                    stop_process(worker.proc)
            delete_redis_keys(f"scale:{database_url.rsplit('/', 1)[1]}:")


def create_runs(url: str, key: str, tag: str) -> dict[str, tuple[str, str, str]]:
    """RUNS background runs created through the worker at ``url``: run id -> (thread id, tag, answer)."""
    runs = {}
    with get_sync_client(url=url, api_key=key) as client:
        for i in range(RUNS):
            text, answer = problem(tag, i)
            thread = client.threads.create()
            run = client.runs.create(thread["thread_id"], "scale", input={"problem": text}, context=CONTEXT)
            runs[run["run_id"]] = (thread["thread_id"], f"{tag}-{i}", answer)
    return runs


def assert_all_succeed_with_their_answers(url: str, key: str, runs: dict[str, tuple[str, str, str]],
                                          leases: Leases) -> None:
    wait_for(lambda: leases.finished(runs), RUN_TIMEOUT, "every run to finish", 0.5)
    with get_sync_client(url=url, api_key=key) as client:
        for run_id, (thread_id, tag, answer) in runs.items():
            assert client.runs.get(thread_id, run_id)["status"] == "success", tag
            values = client.threads.get_state(thread_id)["values"]
            assert values["answer"] == answer, (tag, values.get("answer"))
            assert [s["index"] for s in values["steps"]] == [0, 1], tag


def test_runs_created_through_one_worker_are_executed_by_either(tmp_path) -> None:
    with two_workers(tmp_path) as (a, _b, key, _, _, leases):
        runs = create_runs(a.url, key, "either")
        assert_all_succeed_with_their_answers(a.url, key, runs, leases)
        executed = {run_id: leases.owners(run_id) for run_id in runs}
        by_b = [run_id for run_id, owners in executed.items() if owners == {"B"}]
        by_a = [run_id for run_id, owners in executed.items() if owners == {"A"}]
        print(f"\n{RUNS} runs created through A: {len(by_a)} executed by A, {len(by_b)} by B")
        assert by_b and by_a, executed  # both executed runs; every run was seen held by exactly one worker
        assert len(by_a) + len(by_b) == RUNS, executed


def test_a_worker_killed_mid_load_has_its_runs_finished_by_the_other(tmp_path) -> None:
    with two_workers(tmp_path) as (a, b, key, model, database_url, leases):
        runs = create_runs(a.url, key, "kill")
        tags = {run_id: tag for run_id, (_, tag, _) in runs.items()}

        def a_is_mid_run() -> bool:  # A holds runs, one of them asking its 2nd solve (its 1st is checkpointed)
            held = leases.holding("A") & set(runs)
            return len(held) >= 2 and any(stage in {"system1", "system2"} and index == 1
                                          for r in held for _, stage, index in model.requests(tags[r]))

        wait_for(a_is_mid_run, RUN_TIMEOUT, "worker A to hold runs part-way through")
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed_at = time.time()
        assert a.proc.returncode == -signal.SIGKILL
        with psycopg.connect(database_url) as conn:  # A's leases stay in place until they expire (6 s)
            killed = {row[0] for row in conn.execute(
                "SELECT run_id FROM runs WHERE status = 'running' AND claimed_by LIKE %s",
                (f"%-{a.proc.pid}-worker-%",)).fetchall()}
        assert killed and killed <= set(runs)

        assert_all_succeed_with_their_answers(b.url, key, runs, leases)
        # A's runs were leased again, by B, after Aegra's reaper found A's leases expired (one retry each)
        for run_id in killed:
            assert leases.owners(run_id) == {"A", "B"}, (tags[run_id], leases.owners(run_id))
        with psycopg.connect(database_url) as conn:
            retries = dict(conn.execute("SELECT run_id, (execution_params->>'_retry_count')::int FROM runs "
                                        "WHERE run_id = ANY(%s)", (list(runs),)).fetchall())
        assert {run_id: retries[run_id] for run_id in killed} == dict.fromkeys(killed, 1)
        assert all(retries[run_id] is None for run_id in set(runs) - killed)

        # B resumed each from its last checkpoint: a request whose run had gone on to a later stage before the kill
        # (so its result was checkpointed, durability "sync") is not asked again
        asked_again = 0
        for run_id in killed:
            requests = model.requests(tags[run_id])
            before = [(s, i) for t, s, i in requests if t < killed_at]
            after = [(s, i) for t, s, i in requests if t >= killed_at]

            def order(stage: str, index: int | str) -> int:
                return ORDER.get(stage, 3 + (index if isinstance(index, int) else 0))

            latest = max(order(s, i) for s, i in before)
            checkpointed = {(s, i) for s, i in before if order(s, i) < latest}
            assert not checkpointed & set(after), (tags[run_id], before, after)
            assert after, tags[run_id]  # and B did ask for the rest
            asked_again += sum((s, i) in before for s, i in after)
        print(f"\nkilled A holding {len(killed)} runs part-way; B finished all {RUNS}; "
              f"{asked_again} in-flight request(s) asked again, nothing checkpointed asked again")

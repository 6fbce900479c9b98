"""Load and kill -9 against the production server (``scale serve``: Aegra, PostgreSQL, Redis) with the fake model.

Bounded and loopback only: the fake model answers every request after 100–500 ms (seeded RNG); 50 threads run at
once, then a second batch is interrupted by ``kill -9`` of the server and a restart. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from langgraph_sdk import get_client, get_sync_client

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
CONTEXT = {"candidates": 2}
LOAD_THREADS = 50
KILL_THREADS = 20
RUN_TIMEOUT = 120
"""Seconds every batch of runs gets to finish."""
PROBLEM = "Natalia sold 48 clips in April and half as many in May. How many altogether? [{tag}]"
TAG = re.compile(r"\[(load|kill)-\d+\]")
SUBPROBLEMS = ["Find the first quantity.", "Combine the quantities and give the final answer."]
"""What :func:`scale_graph.testing.scale_script` decomposes every problem into."""


class SlowModel:
    """The fake model's script: scale_script's answers after a seeded uniform 100–500 ms delay."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        reply = scale_script(body)
        with self.lock:
            reply.delay = self.rng.uniform(0.1, 0.5)
        return reply


@dataclass
class Serving:
    url: str
    key: str
    env: dict[str, str]
    port: int
    fake: FakeOpenAIServer
    proc: object = None

    def start(self, log: Path) -> None:
        self.proc = start_server(self.port, self.env, log)
        wait_for(lambda: ready(self.url, self.proc, log), STARTUP_TIMEOUT, "scale serve to pass its self-check", 0.5)


@contextmanager
def serving(tmp_path: Path) -> Iterator[Serving]:
    redis_client().close()  # fail clearly if Redis is missing
    with FakeOpenAIServer(SlowModel()) as fake, postgres_database() as database_url:
        key = secrets.token_urlsafe(24)
        port = free_port()
        env = server_env(SCALE_SERVER_API_KEYS=f"tester:{key}", SCALE_DATABASE_URL=database_url,
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model", **FAST_RECOVERY)
        srv = Serving(url=f"http://127.0.0.1:{port}", key=key, env=env, port=port, fake=fake)
        try:
            srv.start(tmp_path / "server.log")
            yield srv
        finally:
            if srv.proc is not None:
                stop_process(srv.proc)
            delete_redis_keys(f"scale:{database_url.rsplit('/', 1)[1]}:")


def request_id(body: dict) -> tuple[str, str, int | str] | None:
    """(stage, problem tag, sub-problem index) of one model request; None for requests of no load problem.

    Decompose requests carry no index (the k candidates send the same prompt): ``"*"``.
    """
    text = user_text(body)
    tag = TAG.search(text)
    if tag is None:
        return None
    stage = stage_of(body)
    if stage in {"system1", "system2"}:  # one assistant turn per solution so far
        return stage, tag.group(), earlier_solutions(body)
    if stage == "assess":
        current = current_subproblem(body)
        return stage, tag.group(), next((i for i, s in enumerate(SUBPROBLEMS) if s in current), -1)
    return stage, tag.group(), "*"


def assert_complete_and_ordered(state: dict, history: list[dict]) -> None:
    """The final state has every step; the history has every superstep, ordered, step numbers monotonic."""
    values = state["values"]
    assert values["status"] == "completed" and values["answer"] == "20", values
    assert [s["index"] for s in values["steps"]] == list(range(len(SUBPROBLEMS)))
    assert [s["subproblem"] for s in values["steps"]] == SUBPROBLEMS
    assert state["next"] == []
    steps = [h["metadata"]["step"] for h in history]  # newest first
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps), steps
    assert steps[-1] == -1 and steps[0] == steps[-1] + len(steps) - 1, steps  # every superstep down to the input
    solved = [len(h["values"].get("steps") or []) for h in reversed(history)]
    assert solved == sorted(solved) and solved[-1] == len(SUBPROBLEMS)  # steps only ever grow, in order
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]


async def one_run(client, index: int) -> tuple[str, float]:
    thread = await client.threads.create()
    started = time.monotonic()
    run = await client.runs.create(thread["thread_id"], "scale",
                                   input={"problem": PROBLEM.format(tag=f"load-{index}")}, context=CONTEXT)
    await client.runs.join(thread["thread_id"], run["run_id"])
    elapsed = time.monotonic() - started
    status = (await client.runs.get(thread["thread_id"], run["run_id"]))["status"]
    assert status == "success", (index, status)
    return thread["thread_id"], elapsed


def test_50_concurrent_runs_all_finish_with_complete_ordered_histories(tmp_path) -> None:
    with serving(tmp_path) as srv:
        async def load() -> list[tuple[str, float]]:
            async with get_client(url=srv.url, api_key=srv.key, timeout=RUN_TIMEOUT) as client:
                return await asyncio.wait_for(
                    asyncio.gather(*(one_run(client, i) for i in range(LOAD_THREADS))), RUN_TIMEOUT)

        started = time.monotonic()
        results = asyncio.run(load())
        duration = time.monotonic() - started
        with get_sync_client(url=srv.url, api_key=srv.key) as client:
            for thread_id, _ in results:
                assert_complete_and_ordered(client.threads.get_state(thread_id),
                                            client.threads.get_history(thread_id, limit=100))
        # every load problem was asked exactly once per step (no duplicate work under load)
        ids = [request_id(b) for b in srv.fake.requests]
        per_step = {i: ids.count(i) for i in set(ids) if i is not None}
        assert all(n == (2 if i[0] == "decompose" else 1) for i, n in per_step.items()), per_step
        # decompose ×2, 2 assessments, 2 solves per problem (the 2 candidates agree, so select asks no model)
        assert len(per_step) == LOAD_THREADS * 5 and "select" not in {i[0] for i in per_step}

    latencies = sorted(elapsed for _, elapsed in results)
    figures = {"runs": len(results), "concurrent": LOAD_THREADS, "candidates": CONTEXT["candidates"],
               "model_latency_s": [0.1, 0.5], "duration_s": round(duration, 2),
               "p50_s": round(statistics.median(latencies), 2),
               "p95_s": round(statistics.quantiles(latencies, n=20)[18], 2),
               "max_s": round(latencies[-1], 2)}
    (tmp_path / "load.json").write_text(json.dumps(figures, indent=2))
    print(f"\nload figures ({tmp_path / 'load.json'}):")
    print(f"| {figures['runs']} runs, {LOAD_THREADS} at once | {figures['duration_s']} s | "
          f"p50 {figures['p50_s']} s | p95 {figures['p95_s']} s | max {figures['max_s']} s |")


def finished_before(history: list[dict], moment: datetime) -> dict:
    """The values of the newest checkpoint written before ``moment`` ({} when there is none)."""
    for h in history:  # newest first
        if datetime.fromisoformat(h["created_at"]) < moment:
            return h["values"]
    return {}


def finished_ids(values: dict, tag: str) -> set[tuple]:
    """The request ids whose results a checkpoint holds (so they must not be asked again)."""
    done: set[tuple] = set()
    if len(values.get("candidates") or []) >= CONTEXT["candidates"]:
        done.add(("decompose", tag, "*"))
    if values.get("subproblems"):
        done.add(("select", tag, "*"))
    for index in (values.get("assessments") or {}):
        done.add(("assess", tag, int(index)))
    for step in values.get("steps") or []:
        done.add((step["mode"], tag, step["index"]))
    return done


def test_kill_9_mid_load_then_restart_every_run_succeeds_and_no_finished_step_is_asked_again(tmp_path) -> None:
    with serving(tmp_path) as srv, get_sync_client(url=srv.url, api_key=srv.key) as client:
        runs: dict[str, tuple[str, str]] = {}
        for i in range(KILL_THREADS):
            tag = f"[kill-{i}]"
            thread = client.threads.create()
            run = client.runs.create(thread["thread_id"], "scale", input={"problem": PROBLEM.format(tag=tag[1:-1])},
                                     context=CONTEXT)
            runs[tag] = (thread["thread_id"], run["run_id"])

        def solves() -> int:
            return sum(stage_of(b) in {"system1", "system2"} for b in srv.fake.requests)

        wait_for(lambda: solves() >= KILL_THREADS // 2, RUN_TIMEOUT, "half the runs to reach solving")
        srv.proc.kill()  # kill -9
        srv.proc.wait(timeout=10)
        killed_at = datetime.now().astimezone()
        time.sleep(0.5)  # let requests already on the wire reach the fake's log
        asked = len(srv.fake.requests)
        srv.start(tmp_path / "server-restarted.log")

        def all_done() -> bool:
            return all(client.runs.get(t, r)["status"] not in {"pending", "running"} for t, r in runs.values())

        wait_for(all_done, RUN_TIMEOUT, "every run to be taken up again and finish", 1.0)
        statuses = {tag: client.runs.get(t, r)["status"] for tag, (t, r) in runs.items()}
        assert set(statuses.values()) == {"success"}, statuses

        again = [request_id(b) for b in srv.fake.requests[asked:]]
        resumed = 0
        for tag, (thread_id, _) in runs.items():
            history = client.threads.get_history(thread_id, limit=100)
            assert_complete_and_ordered(client.threads.get_state(thread_id), history)
            done = finished_ids(finished_before(history, killed_at), tag)
            repeated = [i for i in again if i in done]
            assert not repeated, (tag, repeated)
            resumed += bool(done) and any(i is not None and i[1] == tag for i in again)
        assert resumed >= 1  # the kill did land mid-run: some run had finished steps and asked for more after it
    print(f"\nkill -9 mid-load: {KILL_THREADS} runs, {asked} requests before the kill, "
          f"{len(srv.fake.requests) - asked} after; {resumed} runs resumed from a checkpoint")

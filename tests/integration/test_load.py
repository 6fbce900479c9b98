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
ONE_KEY_FOR_ALL = {"SCALE_SERVER_TENANT_RUNS": str(LOAD_THREADS), "SCALE_SERVER_TENANT_MODEL_REQUESTS": "1000"}
"""The load and kill tests send every run with one key, standing in for many clients: its per-tenant limits are
raised so they measure the server, not one tenant's share of it (the tenant tests below use the defaults' kind)."""
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
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model", **FAST_RECOVERY, **ONE_KEY_FOR_ALL)
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
        # under final_step "question" the last sub-problem is the problem itself
        return stage, tag.group(), next((i for i, s in enumerate(SUBPROBLEMS) if s in current), len(SUBPROBLEMS) - 1)
    return stage, tag.group(), "*"


def assert_complete_and_ordered(state: dict, history: list[dict]) -> None:
    """The final state has every step; the history has every superstep, ordered, step numbers monotonic."""
    values = state["values"]
    assert values["status"] == "completed" and values["answer"] == "20", values
    assert [s["index"] for s in values["steps"]] == list(range(len(SUBPROBLEMS)))
    # final_step "question" (the default): the last step is the original problem, solved with the rest in context
    assert [s["subproblem"] for s in values["steps"]] == [*SUBPROBLEMS[:-1], values["problem"]]
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
    if len(values.get("decompositions") or []) >= CONTEXT["candidates"]:
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


# --- tenant isolation: one API key flooding at its caps does not slow another's run ----------------------------

MODEL_SLOTS = 6
"""The fake model serves this many requests at once (as vLLM or llama.cpp has a fixed number of slots)."""
TENANT_RUNS = 4
TENANT_MODEL_REQUESTS = 3
FLOOD_CONTEXT = {"candidates": 16}
"""The most k this server allows (SCALE_SERVER_MAX_CANDIDATES' default): 20 model requests per run."""
CALM_RUNS = 3
ISOLATION_BOUND = 1.5
"""Tenant B's run under tenant A's flood takes at most this many times its time alone."""


class SlottedModel:
    """scale_script's answers after a seeded 100–300 ms, MODEL_SLOTS requests at a time; counts each tenant's
    requests in flight at the model (waiting for a slot or being served)."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(MODEL_SLOTS)
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def __call__(self, body: dict) -> Reply:
        found = re.search(r"\[(flood|calm)-\d+\]", user_text(body))
        tenant = found.group(1) if found else "other"
        with self.lock:
            delay = self.rng.uniform(0.1, 0.3)
            self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1
            self.peak[tenant] = max(self.peak.get(tenant, 0), self.in_flight[tenant])
        try:
            with self.slots:
                time.sleep(delay)
        finally:
            with self.lock:
                self.in_flight[tenant] -= 1
        return scale_script(body)


@contextmanager
def two_tenants(tmp_path: Path, **limits: str) -> Iterator[tuple[Serving, str, SlottedModel]]:
    """``scale serve`` with tenants ``flood`` and ``calm`` (the Serving's key is flood's; calm's is returned)."""
    redis_client().close()
    model = SlottedModel()
    with FakeOpenAIServer(model) as fake, postgres_database() as database_url:
        flood, calm = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        port = free_port()
        env = server_env(SCALE_SERVER_API_KEYS=f"flood:{flood},calm:{calm}", SCALE_DATABASE_URL=database_url,
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model", **limits)
        srv = Serving(url=f"http://127.0.0.1:{port}", key=flood, env=env, port=port, fake=fake)
        try:
            srv.start(tmp_path / "server.log")
            yield srv, calm, model
        finally:
            if srv.proc is not None:
                stop_process(srv.proc)
            delete_redis_keys(f"scale:{database_url.rsplit('/', 1)[1]}:")


async def calm_runs(url: str, key: str, first: int) -> list[float]:
    """Tenant calm's latencies: CALM_RUNS runs one after another (candidates=2, 6 model requests each)."""
    async with get_client(url=url, api_key=key, timeout=RUN_TIMEOUT) as client:
        latencies = []
        for i in range(first, first + CALM_RUNS):
            thread = await client.threads.create()
            started = time.monotonic()
            run = await client.runs.create(thread["thread_id"], "scale", context=CONTEXT,
                                           input={"problem": PROBLEM.format(tag=f"calm-{i}")})
            await client.runs.join(thread["thread_id"], run["run_id"])
            latencies.append(time.monotonic() - started)
            assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
    return latencies


async def flood_while(url: str, key: str, model: SlottedModel, measure) -> tuple[list[float], dict[str, int]]:
    """Tenant flood keeps trying to start k=16 runs from 6 loops (each retrying a 429 after 0.1 s, ignoring
    Retry-After); once its requests reach the model, ``measure()`` runs. Returns its result and flood's counts."""
    import httpx

    stop = asyncio.Event()
    counts = {"accepted": 0, "refused": 0}
    async with get_client(url=url, api_key=key, timeout=RUN_TIMEOUT) as client:
        async def attacker(n: int) -> None:
            i = 0
            while not stop.is_set():
                thread = await client.threads.create()
                while not stop.is_set():
                    try:
                        run = await client.runs.create(thread["thread_id"], "scale", context=FLOOD_CONTEXT,
                                                       input={"problem": PROBLEM.format(tag=f"flood-{n * 1000 + i}")})
                    except httpx.HTTPStatusError as exc:
                        assert exc.response.status_code == 429, exc.response.text
                        assert exc.response.headers["retry-after"]
                        counts["refused"] += 1
                        await asyncio.sleep(0.1)
                        continue
                    counts["accepted"] += 1
                    i += 1
                    await client.runs.join(thread["thread_id"], run["run_id"])
                    break

        attackers = [asyncio.create_task(attacker(n)) for n in range(6)]
        try:
            deadline = time.monotonic() + 30
            while model.peak.get("flood", 0) < TENANT_MODEL_REQUESTS or not (counts["refused"] or
                                                                            counts["accepted"] >= 6):
                assert time.monotonic() < deadline, (counts, model.peak)
                await asyncio.sleep(0.1)
            result = await measure()
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*attackers, return_exceptions=True), RUN_TIMEOUT)
    return result, counts


def isolation_figures(tmp_path: Path, **limits: str) -> dict:
    """Tenant calm alone, then while tenant flood floods; the medians, their ratio and what flood managed."""
    with two_tenants(tmp_path, **limits) as (srv, calm_key, model):
        alone = asyncio.run(calm_runs(srv.url, calm_key, 0))
        flooded, counts = asyncio.run(flood_while(srv.url, srv.key, model,
                                                  lambda: calm_runs(srv.url, calm_key, 100)))
    figures = {"calm_alone_s": round(statistics.median(alone), 2),
               "calm_under_flood_s": round(statistics.median(flooded), 2),
               "flood_runs_accepted": counts["accepted"], "flood_runs_refused_429": counts["refused"],
               "flood_peak_model_requests": model.peak.get("flood", 0),
               "calm_peak_model_requests": model.peak.get("calm", 0), "model_slots": MODEL_SLOTS, **limits}
    figures["slowdown"] = round(figures["calm_under_flood_s"] / figures["calm_alone_s"], 2)
    return figures


def test_a_tenant_flooding_at_its_caps_does_not_slow_another_tenants_run(tmp_path) -> None:
    limits = {"SCALE_SERVER_TENANT_RUNS": str(TENANT_RUNS),
              "SCALE_SERVER_TENANT_MODEL_REQUESTS": str(TENANT_MODEL_REQUESTS)}
    figures = isolation_figures(tmp_path, **limits)
    (tmp_path / "isolation.json").write_text(json.dumps(figures, indent=2))
    print(f"\ntenant isolation ({tmp_path / 'isolation.json'}): calm alone {figures['calm_alone_s']} s, "
          f"under flood {figures['calm_under_flood_s']} s ({figures['slowdown']}×); flood: "
          f"{figures['flood_runs_accepted']} runs accepted, {figures['flood_runs_refused_429']} refused with 429, "
          f"at most {figures['flood_peak_model_requests']} model requests at once")
    assert figures["flood_peak_model_requests"] <= TENANT_MODEL_REQUESTS
    assert figures["flood_runs_refused_429"] > 0
    assert figures["slowdown"] <= ISOLATION_BOUND, figures


def test_without_tenant_caps_the_same_flood_does_slow_the_other_tenant(tmp_path) -> None:
    """The control: caps as good as off (what the server did before), so the test above can fail."""
    figures = isolation_figures(tmp_path, SCALE_SERVER_TENANT_RUNS="1000", SCALE_SERVER_TENANT_MODEL_REQUESTS="1000")
    print(f"\nno tenant caps: calm alone {figures['calm_alone_s']} s, under flood {figures['calm_under_flood_s']} s "
          f"({figures['slowdown']}×); flood peak {figures['flood_peak_model_requests']} model requests")
    assert figures["slowdown"] > ISOLATION_BOUND, figures

"""Scale-out on the simulated GPU: runs per minute with one ``scale serve`` worker and with two, in one run.

Both arms share one PostgreSQL database (of this script's own, dropped at the end), one Redis (keys under the
database's prefix, deleted at the end) and one simulated H100 (bench/gpu_sim.py, the paper's Qwen3-32B lengths on
AIME, ``--profile paper`` settings: k = 8, 32K budgets). Each worker executes at most ``--runs-per-worker`` runs at
once (``SCALE_SERVER_CONCURRENT_RUNS``, the configured limit of one process); the rest wait in the shared Redis
queue. Arm 1: worker A alone gets ``waves × R`` problems. Arm 2: worker B joins on the same database and Redis,
and each of those problems goes twice (``[copy N] P``: the simulator gives a copy P's lengths), round-robin to A
and B, as a load balancer in front of them would: twice the work in the same number of waves.

Throughput is measured as in bench/simulated.py, in time as against a real GPU: a run's time is its model time
(simulated seconds at the simulated GPU, queueing included) plus its own time at the worker (real seconds: leased
-> finished, less the time it had a request at the GPU), so the worker's real time is not multiplied by the speed
factor. Runs per minute under sustained load = runs executing at once while others still waited in the queue
(measured by polling Aegra's leases) / the mean run time (Little's law). The whole batch's runs per simulated
minute (its real time x ``--speed``, ramp-up and tail included) is printed beside it.

What the ratio shows: a second worker doubles the runs executing at once; the simulated GPU, far from full at 2R
runs (its mean batch and KV cache are printed), serves them at nearly the same per-token time, so throughput nearly
doubles. The GPU's own ceiling is printed too: each arm's requests replayed on the same simulated GPU with R and
2R problems at a time and no client at all (its per-token time grows with the context the batch holds).

    python bench/scale_out.py [--runs-per-worker 4] [--waves 3] [--speed 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import Simulator, machine, mean, verdict
from gpu_sim import GPUParams, problem_key, replay_ideal
from simulated import per_problem

from scale_graph.context import PROFILES, Context
from scale_graph.eval.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("SCALE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SCALE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
TERMINAL = ("success", "error", "interrupted")


# --- the components -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A PostgreSQL database of this script's own, dropped afterwards with its Redis keys (its URL)."""
    import psycopg
    import redis

    name = f"scale_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            client = redis.Redis.from_url(REDIS_URL)
            with contextlib.closing(client):
                for key in client.scan_iter(match=f"scale:{name}:*", count=500):
                    client.delete(key)


@dataclass
class Worker:
    """One ``scale serve`` process."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU seconds the process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_worker(name: str, env: dict[str, str], logs: Path) -> Worker:
    """Start ``scale serve`` on a free port and wait until it has passed its self-check."""
    import httpx

    port = free_port()
    log = logs / f"worker-{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scale_graph.cli", "serve", "--port", str(port),
                                 "--config", str(ROOT / "langgraph.json"), "--log-level", "WARNING"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    worker = Worker(name, port, proc, log)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{worker.url}/health", timeout=2).status_code == 200:
                return worker
        if time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"worker {name} did not pass its self-check within 120 s")
        time.sleep(0.3)


# --- one arm ----------------------------------------------------------------------------------------------------


@dataclass
class Arm:
    """What one arm measured (times in real seconds)."""

    runs: int
    seconds: float
    """First run created -> last run finished."""
    durations: list[float]
    """Each run's time as against a real GPU: its model time (simulated s: the union of its requests at the
    simulated GPU, queueing included) + its own time at the worker (real s: leased -> finished, less the time it had
    a request at the simulator), as bench/simulated.py counts a problem's time."""
    gaps: list[float]
    """Each run's own time at the worker (real s)."""
    in_flight: float
    """Runs executing at once, averaged while runs were still waiting in the queue (every worker full)."""
    per_worker: Counter[str]
    """Runs each worker executed (the worker that held the lease, by its pid)."""
    peak: dict[str, int]
    """The most runs each worker held at once."""
    failed: int
    worker_cpu: float
    sim_cpu: float
    stats: dict[str, Any] = field(default_factory=dict)

    def rate(self) -> float:
        """Runs per minute under sustained load (Little's law: runs in flight / mean run time)."""
        return 60 * self.in_flight / mean(self.durations)

    def batch_rate(self, speed: float) -> float:
        """Runs per simulated minute over the whole batch (ramp-up and tail included)."""
        return 60 * self.runs / (self.seconds * speed)


async def submit(urls: list[str], key: str, problems: list[str], context: dict[str, Any]) -> list[str]:
    """Create one thread and one background run per problem, round-robin over ``urls``; the run ids."""
    from langgraph_sdk import get_client

    clients = [get_client(url=url, api_key=key, timeout=60) for url in urls]

    async def one(i: int, problem: str) -> str:
        client = clients[i % len(clients)]
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], "scale", input={"problem": problem}, context=context)
        return str(run["run_id"])

    try:
        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(problems))))
    finally:
        for client in clients:
            await client.aclose()


class Watcher(threading.Thread):
    """Polls Aegra's runs table (every ``interval`` s) for the runs not in ``old``: when each was leased and
    finished, which worker held it (Aegra names a lease holder ``<host>-<pid>-worker-<n>``), and how many runs were
    executing and waiting at each poll."""

    def __init__(self, dsn: str, pids: dict[int, str], old: set[str], interval: float = 0.2) -> None:
        super().__init__(name="scale-out-watcher", daemon=True)
        self.dsn, self.pids, self.old, self.interval = dsn, pids, old, interval
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[float, str]] = {}
        self.owner: dict[str, str] = {}
        self.samples: list[tuple[float, Counter[str], int]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.stop.is_set():
                    self.poll(conn.execute("SELECT run_id, status, claimed_by FROM runs").fetchall())
                    self.stop.wait(self.interval)
        except BaseException as exc:  # reported by the arm
            self.error = exc

    def poll(self, rows: list[tuple[str, str, str | None]]) -> None:
        now = time.monotonic()
        running: Counter[str] = Counter()
        pending = 0
        for run_id, status, claimed_by in rows:
            if run_id in self.old:
                continue
            if status in TERMINAL:
                self.finished.setdefault(run_id, (now, status))
                continue
            if status == "pending":
                pending += 1
                continue
            self.started.setdefault(run_id, now)
            pid = re.search(r"-(\d+)-worker-\d+$", claimed_by or "")
            owner = self.pids.get(int(pid.group(1))) if pid else None
            if owner is not None:
                self.owner[run_id] = owner
                running[owner] += 1
        self.samples.append((now, running, pending))


def run_arm(workers: list[Worker], sim: Simulator, dsn: str, key: str, problems: list[str],
            context: dict[str, Any], timeout: float) -> Arm:
    """Submit ``problems`` round-robin to ``workers`` and watch until every run has finished."""
    import psycopg

    sim.post("reset")
    with psycopg.connect(dsn, autocommit=True) as conn:
        old = {row[0] for row in conn.execute("SELECT run_id FROM runs").fetchall()}
    watcher = Watcher(dsn, {w.proc.pid: w.name for w in workers}, old)
    cpu, sim_cpu = sum(w.cpu_seconds() for w in workers), sim.cpu_seconds()
    start = time.monotonic()
    watcher.start()
    try:
        run_ids = asyncio.run(submit([w.url for w in workers], key, problems, context))
        deadline = start + timeout
        while not all(r in watcher.finished for r in run_ids):
            if watcher.error is not None:
                raise RuntimeError(f"watching the runs failed: {watcher.error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"runs not finished after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        watcher.stop.set()
        watcher.join()
    cpu, sim_cpu = sum(w.cpu_seconds() for w in workers) - cpu, sim.cpu_seconds() - sim_cpu
    end = max(watcher.finished[r][0] for r in run_ids)
    stats = sim.post("stats")
    at_gpu = per_problem(stats["log"])
    durations, gaps = [], []
    for run_id, problem in zip(run_ids, problems, strict=True):
        p = at_gpu[problem_key(problem)]
        gap = max(watcher.finished[run_id][0] - watcher.started.get(run_id, start) - p["busy_real"], 0.0)
        durations.append(p["model"] + gap)
        gaps.append(gap)
    full = [sum(running.values()) for _, running, pending in watcher.samples if pending]
    peak: Counter[str] = Counter()
    for _, running, _ in watcher.samples:
        for name, n in running.items():
            peak[name] = max(peak[name], n)
    failed = sum(watcher.finished[r][1] != "success" for r in run_ids)
    return Arm(len(run_ids), end - start, durations, gaps, mean(full),
               Counter(watcher.owner[r] for r in run_ids if r in watcher.owner), dict(peak), failed, cpu, sim_cpu,
               stats)


def ideal_ratio(one: Arm, two: Arm, r: int, params: GPUParams) -> float:
    """The GPU's own ceiling: each arm's requests replayed on the same simulated GPU with no client at all, R and 2R
    problems at a time, in problems per GPU-second (Little's law, as the arms are measured): 2R over R."""
    rates = []
    for arm, concurrency in ((one, r), (two, 2 * r)):
        spans = replay_ideal(arm.stats["log"], concurrency, params)
        rates.append(concurrency / mean([end - begin for begin, end in spans]))
    return rates[1] / rates[0]


HEADER = (f"{'arm':<10} {'runs':>4} {'in flight':>9} {'run s':>6} {'own s':>6} {'per min':>8} {'batch/min':>9} "
          f"{'real s':>6} {'tok/run':>7} {'GPU batch':>9} {'KV':>6} {'workers':>7} {'sim':>5} {'lag ms':>6}")


def report(label: str, arm: Arm, speed: float) -> None:
    s = arm.stats
    tokens = sum(e["completion"] for e in s["log"]) / arm.runs
    executed = ", ".join(f"{name} {n}" for name, n in sorted(arm.per_worker.items()))
    peaks = ", ".join(f"{name} {n}" for name, n in sorted(arm.peak.items()))
    print(f"{label:<10} {arm.runs:>4} {arm.in_flight:>9.1f} {mean(arm.durations):>6.0f} {mean(arm.gaps):>6.2f} "
          f"{arm.rate():>8.2f} {arm.batch_rate(speed):>9.2f} {arm.seconds:>6.1f} {tokens:>7.0f} "
          f"{s['mean_batch']:>9.1f} {s['peak_kv'] / 1000:>5.0f}K {arm.worker_cpu / arm.seconds:>7.0%} "
          f"{arm.sim_cpu / arm.seconds:>5.0%} {s['lag_max'] * 1000:>6.0f}   executed by: {executed}; most at once: "
          f"{peaks}" + (f"; {arm.failed} FAILED" if arm.failed else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-per-worker", type=int, default=4, help="SCALE_SERVER_CONCURRENT_RUNS of each worker")
    parser.add_argument("--waves", type=int, default=3, help="runs per worker = waves x runs-per-worker")
    parser.add_argument("--speed", type=float, default=40.0, help="simulated seconds per real second")
    parser.add_argument("--profile", default="aime", help="the simulator's length profile")
    args = parser.parse_args()
    r = args.runs_per_worker
    print(f"machine: {machine()}")
    print(f"simulated GPU: H100 SXM 80 GB, Qwen3-32B-FP8, vLLM-like scheduler: {GPUParams().describe()}")
    started = time.perf_counter()
    print(f"\n== scale-out: {args.waves} waves of SCALE_SERVER_CONCURRENT_RUNS={r} runs per worker, paper settings "
          f"(k = 8, 32K budgets), {args.profile} lengths, one simulated H100 at {args.speed:g}x")
    # Arm 2 runs each of arm 1's problems twice, so both arms do the same work per run: the simulator draws the
    # lengths of "[copy N] P" from P (gpu_sim.plan_key) and logs each copy under its own key.
    problems = [p.problem for p in load_dataset("math500").problems[: args.waves * r]]
    context = Context.own_fields(PROFILES["paper"])
    key = secrets.token_urlsafe(24)
    with (database() as dsn, Simulator("--speed", str(args.speed), "--profile", args.profile) as sim,
          tempfile.TemporaryDirectory(prefix="scale-out-") as logs):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALE_", "AEGRA_", "REDIS_", "DATABASE_"))}
        env.update(SCALE_SERVER_API_KEYS=f"bench:{key}", SCALE_DATABASE_URL=dsn, SCALE_REDIS_URL=REDIS_URL,
                   SCALE_BASE_URL=sim.base_url, SCALE_SERVER_CONCURRENT_RUNS=str(r),
                   # one key stands in for many clients: its per-tenant limits must not be what is measured
                   SCALE_SERVER_TENANT_RUNS="10000", SCALE_SERVER_TENANT_MODEL_REQUESTS="10000")
        print(f"simulator: {sim.banner}")
        print("in flight = runs executing at once while others waited; run s = mean run time as against a real GPU "
              "(its model time, simulated, + own s, its real time at the worker with no request at the GPU); per min "
              "= runs per minute under sustained load (in flight / run s); batch/min = runs per simulated minute "
              "over the whole batch, ramp-up and tail included, all real time x speed; workers, sim = CPU share of "
              "one core; GPU batch = mean sequences per GPU step; lag = the simulator's worst delay (real)")
        print(HEADER)
        workers = [start_worker("A", env, Path(logs))]
        try:
            one = run_arm(workers, sim, dsn, key, [f"[copy 1] {p}" for p in problems], context, 600)
            report("1 worker", one, args.speed)
            workers.append(start_worker("B", env, Path(logs)))
            two = run_arm(workers, sim, dsn, key, [f"[copy {c}] {p}" for p in problems for c in (1, 2)],
                          context, 600)
            report("2 workers", two, args.speed)
        finally:
            for worker in workers:
                worker.stop()
    ratio = two.rate() / one.rate()
    ceiling = ideal_ratio(one, two, r, GPUParams())
    both = len(two.per_worker) == 2 and min(two.per_worker.values()) > 0
    at_limit = all(n <= r for n in [*one.peak.values(), *two.peak.values()])
    print(f"the GPU alone (each arm's requests replayed with {r} and {2 * r} problems at a time, no client): "
          f"{ceiling:.2f}x")
    verdict("scale-out", f"2 workers {ratio:.2f}x the runs per minute of 1 ({two.rate():.2f} vs {one.rate():.2f}, "
            f"one simulated H100)", ">= 1.7x",
            ratio >= 1.7 and both and at_limit and not (one.failed or two.failed),
            f"each worker executes at most SCALE_SERVER_CONCURRENT_RUNS={r} runs (peaks {one.peak} alone, "
            f"{two.peak} together; both executed runs: {both}); the GPU's own ceiling for {2 * r} vs {r} problems at "
            f"a time is {ceiling:.2f}x")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

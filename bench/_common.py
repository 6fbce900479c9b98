"""Shared helpers of the benchmark scripts: the machine line, problems, the embedded server, the verdict line."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


def gsm8k(n: int, offset: int = 0) -> list[dict]:
    """The first ``n`` gsm8k_dev problems after ``offset``."""
    text = resources.files("scale_graph").joinpath("data/gsm8k_dev.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[offset : offset + n]]


def mean(xs: list[float]) -> float:
    """Arithmetic mean (0 for no data)."""
    return statistics.fmean(xs) if xs else 0.0


def verdict(name: str, value: str, goal: str, met: bool, note: str = "") -> None:
    """The one-line conclusion every benchmark ends with."""
    print(f"CONCLUSION {name}: {value} (goal {goal}: {'met' if met else 'NOT met'}){' — ' + note if note else ''}")


def slot_scaling(base_url: str, requests: int = 8, max_tokens: int = 96) -> float:
    """Raw server throughput (tokens/s) with 4 requests in flight over 1 at a time: the ceiling on any gain from
    running SCALE's requests concurrently on this server."""
    import concurrent.futures
    import time

    import httpx

    def one(i: int) -> int:
        body = {"model": "m", "max_completion_tokens": max_tokens, "temperature": 0.6,
                "messages": [{"role": "user", "content": f"Write a short story number {i} about a cat."}]}
        reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=300).json()
        return int(reply["usage"]["completion_tokens"])

    start = time.perf_counter()
    sequential = sum(one(i) for i in range(requests)) / (time.perf_counter() - start)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = sum(pool.map(one, range(requests))) / (time.perf_counter() - start)
    print(f"server throughput: {sequential:.1f} tok/s one at a time, {parallel:.1f} tok/s with 4 in flight "
          f"({parallel / sequential:.2f}x)")
    return parallel / sequential


# --- the simulated GPU server (bench/gpu_sim.py) and what the simulated benchmarks measure around it -------------


class Simulator:
    """``bench/gpu_sim.py`` in a process of its own (so its clock does not share this process's GIL)."""

    def __init__(self, *args: str) -> None:
        import subprocess

        script = Path(__file__).resolve().parent / "gpu_sim.py"
        self.process = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("gpu-sim: "):
            self.process.kill()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.base_url, self.banner = line.removeprefix("gpu-sim: ").split(" ", 1)
        self.root_url = self.base_url.removesuffix("/v1")

    def post(self, path: str) -> dict:
        """``POST /sim/<path>`` (``stats`` or ``reset``)."""
        import httpx

        return httpx.post(f"{self.root_url}/sim/{path}", json={}, timeout=120).json()

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def union(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``intervals``."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def cpu_seconds() -> float:
    """CPU seconds used by this process and its finished children (the grading workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class ThreadSampler:
    """A sampling profiler of every thread of this process: where each thread is, every ``interval`` seconds.

    ``report()`` lists, per group of threads (the shared event loop, the rest), the innermost frames of our code or
    of the libraries that threads were found in most often, and how often the event loop thread was busy (not
    waiting in ``select``).
    """

    OURS = ("scale_graph", "langgraph", "langchain", "openai", "httpx", "httpcore", "asyncio", "concurrent",
            "threading", "queue", "selectors", "grading", "sqlite", "socket", "ssl", "json", "pydantic")

    def __init__(self, interval: float = 0.02) -> None:
        import collections
        import threading

        self.interval = interval
        self.samples = 0
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.loop_busy = self.loop_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    @staticmethod
    def _short(frame) -> str:  # type: ignore[no-untyped-def]
        name = frame.f_code.co_filename
        name = name.split("site-packages/")[-1].split("src/")[-1].split("lib/python3.12/")[-1]
        return f"{name}:{frame.f_code.co_name}"

    @staticmethod
    def _where(frame) -> str:  # type: ignore[no-untyped-def]
        """The innermost frame of a known library or ours, and the innermost of ours below it (who called)."""
        stack = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        known = [f for f in stack if any(part in f.f_code.co_filename for part in ThreadSampler.OURS)]
        if not known:
            return ThreadSampler._short(stack[0]) if stack else "?"
        where = ThreadSampler._short(known[0])
        ours = next((f for f in known if "scale_graph" in f.f_code.co_filename), None)
        if ours is not None and ours is not known[0]:
            where += f" <- {ThreadSampler._short(ours)}"
        return where

    @staticmethod
    def group(name: str) -> str:
        """Threads grouped by role: the shared event loop of sync runs, the evaluation runner's workers,
        LangGraph's task pools, the event loop's default executor (``asyncio.to_thread``), the rest by name."""
        import re

        if name == "scale-sync-nodes":
            return "event loop"
        base = re.sub(r"[-_]?\d+(_\d+)?$", "", name)
        return {"eval": "eval runner threads", "ThreadPoolExecutor": "LangGraph task threads",
                "asyncio": "asyncio.to_thread pool"}.get(base, base)

    def _run(self) -> None:
        import sys as _sys
        import threading

        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            self.samples += 1
            for ident, frame in _sys._current_frames().items():
                name = names.get(ident, "?")
                if name == "bench-sampler":
                    continue
                where = self._where(frame)
                group = self.group(name)
                if group == "event loop":
                    self.loop_samples += 1
                    if "selectors" in where and "select" in where:
                        continue
                    self.loop_busy += 1
                self.counts[group][where] += 1

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, top: int = 8) -> list[str]:
        """The profile, as lines to print."""
        lines = []
        if self.loop_samples:
            lines.append(f"event loop thread busy in {self.loop_busy / self.loop_samples:.0%} of "
                         f"{self.loop_samples} samples")
        for group, counts in self.counts.items():
            total = sum(counts.values())
            if group == "event loop":
                lines.append("event loop thread, when busy:")
            else:
                lines.append(f"{group}: {total / max(self.samples, 1):.1f} threads on average; where they were:")
            lines += [f"  {n / total:6.1%}  {where}" for where, n in counts.most_common(top)]
        return lines

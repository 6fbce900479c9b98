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

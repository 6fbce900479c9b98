"""(c) ``scale eval`` throughput: problems run 4 at a time vs 1 at a time, same 4-slot embedded server.

Both arms run the real ``scale eval`` command (a subprocess each, into fresh result directories) against one
embedded server started here, on the same problems and settings, one after the other; their order alternates
between rounds. Throughput is attempts per minute. With as many problems as slots the concurrent arm would wait
for its slowest problem with the other slots idle, so the default is twice that.

    python bench/throughput.py [--problems 8] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, mean, slot_scaling, verdict

from scale_graph.local import EmbeddedServer


def eval_minutes(base_url: str, concurrency: int, problems: int) -> tuple[float, str]:
    """Minutes the ``scale eval`` command took, and the work it did (tokens per attempt, from its results)."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "scale_graph.cli", "eval", "--dataset", "gsm8k_dev", "--method", "scale",
                "--limit", str(problems), "--concurrency", str(concurrency), "--out", out, "--quiet",
                "--base-url", base_url, "--candidates", "2", "--system1-max-tokens", "128",
                "--system2-max-tokens", "256", "--control-max-tokens", "192"]
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        minutes = (time.perf_counter() - start) / 60
        rows = [json.loads(line) for path in Path(out).glob("*.jsonl") for line in path.read_text().splitlines()]
        work = (f"{mean([r['tokens']['completion'] for r in rows]):.0f} completion + "
                f"{mean([r['tokens']['prompt'] for r in rows]):.0f} prompt tokens per attempt")
        return minutes, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rates: dict[int, list[float]] = {4: [], 1: []}
    with EmbeddedServer() as server:
        ceiling = slot_scaling(server.base_url)
        for r in range(args.rounds):
            for concurrency in ((4, 1) if r % 2 == 0 else (1, 4)):
                minutes, work = eval_minutes(server.base_url, concurrency, args.problems)
                rates[concurrency].append(args.problems / minutes)
                print(f"concurrency {concurrency}: {args.problems} attempts in {minutes * 60:.0f} s "
                      f"= {rates[concurrency][-1]:.2f} attempts/min ({work})", flush=True)
    ratio = (sum(rates[4]) / len(rates[4])) / (sum(rates[1]) / len(rates[1]))
    verdict("eval throughput", f"{ratio:.2f}x the attempts per minute at concurrency 4 vs 1", ">= 1.8x",
            ratio >= 1.8, f"bounded by the server: 4 slots decode only {ceiling:.2f}x faster than 1 on this CPU")


if __name__ == "__main__":
    main()

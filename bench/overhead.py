"""(b) Orchestration overhead per problem: graph + SQLite checkpoints with durability "sync", zero-latency model.

The fake chat model answers instantly, so what the clock sees is LangGraph, our nodes, the checkpoint writes and
LangChain's call machinery. That is compared, in the same run, with the wall time of real problems on the
embedded model.

    python bench/overhead.py [--fake-problems 30] [--real-problems 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from _common import gsm8k, machine, mean, verdict
from langgraph.checkpoint.sqlite import SqliteSaver

from scale_graph import Context, models, solve
from scale_graph.graph.scale import compile_scale_graph
from scale_graph.local import EmbeddedServer
from scale_graph.testing import FakeChatModels, scale_script


def overhead_per_problem(n: int) -> tuple[float, int]:
    original = models.client.chat_model
    models.client.chat_model = FakeChatModels(scale_script)  # the one factory every model call goes through
    try:
        with tempfile.TemporaryDirectory() as tmp, SqliteSaver.from_conn_string(str(Path(tmp) / "c.sqlite")) as cp:
            graph = compile_scale_graph(checkpointer=cp)
            ctx = Context(base_url="http://fake.invalid/v1", model="fake", candidates=8)
            rows = gsm8k(n)
            solve(rows[0]["problem"], context=ctx, graph=graph, thread_id="warm-up")
            start = time.perf_counter()
            for row in rows:
                solve(row["problem"], context=ctx, graph=graph, thread_id=str(uuid.uuid4()))
            elapsed = (time.perf_counter() - start) / n
            checkpoints = len(list(cp.list({"configurable": {"thread_id": "warm-up"}})))
    finally:
        models.client.chat_model = original
    return elapsed, checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fake-problems", type=int, default=30)
    parser.add_argument("--real-problems", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    fake_seconds, checkpoints = overhead_per_problem(args.fake_problems)
    print(f"zero-latency model, SQLite sync checkpoints: {fake_seconds * 1000:.1f} ms per problem "
          f"({checkpoints} checkpoints per problem, k=8)")
    real: list[float] = []
    with EmbeddedServer() as server:
        ctx = Context(base_url=server.base_url, candidates=8, max_concurrent_requests=4)
        for row in gsm8k(args.real_problems, offset=10):
            start = time.perf_counter()
            solve(row["problem"], context=ctx)
            real.append(time.perf_counter() - start)
            print(f"real run {row['id']}: {real[-1]:.1f} s", flush=True)
    share = fake_seconds / mean(real)
    verdict("overhead", f"{share:.3%} of a real run's wall time ({fake_seconds * 1000:.0f} ms of {mean(real):.1f} s)",
            "<= 1%", share <= 0.01)


if __name__ == "__main__":
    main()

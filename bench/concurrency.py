"""(a) SCALE wall time per problem: fan-outs concurrent vs the same pipeline one request at a time.

The reference implementation makes its 2n+9 model calls one after another. Our graph needs only n+3 sequential
rounds (all k decompositions at once, one selection, all n upfront scores at once, then the n solves in order).
Both arms run the same graph on the same embedded server (4 slots) with the same problems and settings; the
sequential arm only sets the client-side cap to one request in flight. Problems alternate A/B so drift on this
shared machine hits both arms alike. Temperature 0, so both arms generate (nearly) the same tokens.

    python bench/concurrency.py [--problems 4]
"""

from __future__ import annotations

import argparse
import time

from _common import gsm8k, machine, mean, slot_scaling, verdict

from scale_graph import Context, solve
from scale_graph.local import EmbeddedServer


def run(problem: str, ctx: Context) -> tuple[float, int, int]:
    start = time.perf_counter()
    result = solve(problem, context=ctx)
    calls = sum(u["calls"] for u in result.usage.values())
    return time.perf_counter() - start, result.completion_tokens, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with EmbeddedServer() as server:
        ceiling = slot_scaling(server.base_url)
        base = Context(base_url=server.base_url, candidates=8, temperature=0.0, system1_max_tokens=256,
                       system2_max_tokens=512, control_max_tokens=256)
        arms = {"concurrent (cap 4 = slots)": 4, "one at a time (cap 1)": 1}
        times: dict[str, list[float]] = {a: [] for a in arms}
        tokens: dict[str, list[int]] = {a: [] for a in arms}
        print(f"{'problem':<16} {'arm':<28} {'seconds':>8} {'tokens':>7} {'calls':>6}")
        for row in gsm8k(args.problems):
            order = list(arms.items()) if len(times[next(iter(arms))]) % 2 == 0 else list(reversed(arms.items()))
            for arm, cap in order:
                seconds, toks, calls = run(row["problem"], Context(**{**base.__dict__, "max_concurrent_requests": cap}))
                times[arm].append(seconds)
                tokens[arm].append(toks)
                print(f"{row['id']:<16} {arm:<28} {seconds:8.1f} {toks:7d} {calls:6d}", flush=True)
    conc, seq = (mean(times[a]) for a in arms)
    print(f"mean seconds per problem: concurrent {conc:.1f}, one at a time {seq:.1f}; "
          f"mean completion tokens: {mean(tokens[next(iter(arms))]):.0f} vs {mean(tokens[list(arms)[1]]):.0f}")
    ratio = seq / conc if conc else 0.0
    verdict("concurrency", f"{ratio:.2f}x faster than one request at a time", ">= 1.5x", ratio >= 1.5,
            f"bounded by the server: 4 slots decode only {ceiling:.2f}x faster than 1 on this CPU")


if __name__ == "__main__":
    main()

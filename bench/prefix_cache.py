"""(d) Share of solve-prompt tokens the server serves from its prefix cache.

Each solve prompt is stable instructions + P + the earlier (s_j, solution_j) + s_i + the mode's instruction, so
step i+1 extends step i's prefix. The embedded llama.cpp server reports cached prompt tokens per request
(``usage.prompt_tokens_details.cached_tokens``); SCALE keeps them on every step.

    python bench/prefix_cache.py [--problems 4]
"""

from __future__ import annotations

import argparse

from _common import gsm8k, machine, verdict

from scale_graph import Context, solve
from scale_graph.local import EmbeddedServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    prompt = cached = later_prompt = later_cached = 0
    with EmbeddedServer() as server:
        ctx = Context(base_url=server.base_url, candidates=8, max_concurrent_requests=4)
        for row in gsm8k(args.problems, offset=20):
            result = solve(row["problem"], context=ctx)
            for s in result.steps:
                prompt += s["prompt_tokens"]
                cached += s["cached_tokens"]
                if s["index"] > 0:
                    later_prompt += s["prompt_tokens"]
                    later_cached += s["cached_tokens"]
            print(f"{row['id']}: " + ", ".join(f"step {s['index'] + 1} ({s['mode']}) {s['cached_tokens']}/"
                                                f"{s['prompt_tokens']} cached" for s in result.steps), flush=True)
    share = cached / prompt if prompt else 0.0
    later = later_cached / later_prompt if later_prompt else 0.0
    print(f"solve prompts: {cached}/{prompt} tokens from cache; steps after the first: {later_cached}/{later_prompt}")
    verdict("prefix cache", f"{share:.0%} of solve-prompt tokens served from cache ({later:.0%} for steps 2..n)",
            ">= 60%", share >= 0.6)


if __name__ == "__main__":
    main()

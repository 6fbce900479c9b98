"""(d) Share of solve-prompt tokens the server serves from its prefix cache.

Every SCALE request of a problem opens with the same system prompt and P, and the solve requests form one
conversation (user: s_1, assistant: solution_1, user: s_2, ...), so step 1 finds the system prompt and P left in
the cache by the decomposition and assessment calls, and step i+1 finds all of step i's request and reply. The
embedded llama.cpp server reports cached prompt tokens per request (``usage.prompt_tokens_details.cached_tokens``);
SCALE keeps them on every step.

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
        ctx = Context(base_url=server.base_url, candidates=8, max_concurrent_requests=4, system1_max_tokens=128,
                      system2_max_tokens=384, control_max_tokens=192)  # the budgets of the other benchmarks
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

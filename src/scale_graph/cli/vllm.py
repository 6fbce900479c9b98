"""``scale vllm RECIPE``: print (or launch) the vLLM server commands of a model setup and the SCALE flags for it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from scale_graph.vllm import RECIPES, render, server_commands


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale vllm``."""
    p = sub.add_parser("vllm", help="vLLM server commands for a model setup",
                       description="Print the vllm serve command(s) of a recipe and the scale flags that use them. "
                                   "Recipes: " + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values()))
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--tensor-parallel", type=int, default=1, help="GPUs per server (--tensor-parallel-size)")
    p.add_argument("--launch", action="store_true",
                   help="start the server(s) here and wait (needs vLLM on a GPU machine: "
                        "pip install 'scale-graph[vllm]')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the recipe, or launch its servers and wait for them."""
    recipe = RECIPES[args.recipe]
    print(render(recipe, tensor_parallel=args.tensor_parallel))
    if not args.launch:
        return 0
    if shutil.which("vllm") is None:
        print("error: the vllm command is not installed; on a GPU machine: pip install 'scale-graph[vllm]'",
              file=sys.stderr)
        return 1
    procs = [subprocess.Popen(argv) for argv in server_commands(recipe, tensor_parallel=args.tensor_parallel)]
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        return 130

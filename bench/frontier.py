"""(e) Accuracy vs tokens: SCALE at τ 0.2 / 0.5 / 0.8, cot and majority@4 on gsm8k_dev, reported as it falls.

Runs ``scale eval`` for each configuration into one directory (resumable: rerun to continue), then
``scale report`` on it, which prints the table and writes the accuracy-vs-tokens and τ-sweep plots.

    python bench/frontier.py [--limit 50] [--out bench-results/frontier]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import machine

from scale_graph.local import EmbeddedServer

BUDGETS = ["--system1-max-tokens", "128", "--system2-max-tokens", "384", "--control-max-tokens", "192"]
CONFIGS = [
    ["--method", "scale", "--threshold", "0.2", "--candidates", "2"],
    ["--method", "scale", "--threshold", "0.5", "--candidates", "2"],
    ["--method", "scale", "--threshold", "0.8", "--candidates", "2"],
    ["--method", "cot"],
    ["--method", "majority", "--samples", "4"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--out", default="bench-results/frontier")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    cli = [sys.executable, "-m", "scale_graph.cli"]
    with EmbeddedServer() as server:
        for config in CONFIGS:
            print("== scale eval", " ".join(config), flush=True)
            subprocess.run([*cli, "eval", "--dataset", "gsm8k_dev", "--limit", str(args.limit), "--concurrency", "4",
                            "--out", args.out, "--quiet", "--base-url", server.base_url, *config, *BUDGETS],
                           check=True)
    subprocess.run([*cli, "report", args.out], check=True)
    print("CONCLUSION frontier: see the table above and the plots in", args.out,
          "(a 0.5B model on few problems: differences of one problem are noise)")


if __name__ == "__main__":
    main()

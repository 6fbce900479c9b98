"""``scale traces``: chat-format fine-tuning examples from SCALE attempts (sub-problem chain → answer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from scale_graph.cli.report import over_results
from scale_graph.eval.traces import write_traces


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``scale traces``."""
    p = sub.add_parser(
        "traces",
        help="fine-tuning examples from SCALE results",
        description="Write chat-format training examples (problem → the sub-problem chain with "
        "each step's solution → the boxed answer) from SCALE attempts.",
    )
    p.add_argument("dirs", nargs="+", type=Path, help="results directories (or files) written by scale eval")
    p.add_argument("--out", required=True, type=Path, help="the JSONL file to write")
    p.add_argument("--correct-only", action="store_true", help="keep only verified-correct attempts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale traces``."""
    console = Console(stderr=True)
    outcome = over_results(
        args.dirs, lambda rows: write_traces(rows, args.out, correct_only=args.correct_only), console
    )
    if outcome is None:
        return 2
    kept, dropped = outcome
    reasons = ", ".join(f"{n} {why}" for why, n in dropped.most_common()) or "none"
    console.print(
        f"kept {kept} examples in {args.out}; dropped {sum(dropped.values())} ({reasons})", highlight=False
    )
    return 0

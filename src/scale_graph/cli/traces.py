"""``scale traces``: chat-format fine-tuning examples from SCALE attempts (sub-problem chain → answer)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from scale_graph.cli.report import over_results
from scale_graph.eval.traces import DEFAULT_REASONING, REASONING_MODES, write_traces


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale traces``."""
    p = sub.add_parser(
        "traces",
        help="fine-tuning examples from SCALE results",
        description="Write chat-format training examples (problem → the sub-problem chain with "
        "each step's reasoning and solution → the boxed answer) from SCALE attempts.",
    )
    p.add_argument("dirs", nargs="+", type=Path, help="results directories (or files) written by scale eval")
    p.add_argument("--out", required=True, type=Path,
                   help="the JSONL file to write (outside the results directories)")
    p.add_argument("--correct-only", action="store_true", help="keep only verified-correct attempts")
    p.add_argument(
        "--reasoning",
        choices=REASONING_MODES,
        default=DEFAULT_REASONING,
        help="each step's reasoning (thinking) text: 'inline' as <think>…</think> before the step's solution "
        "(default), 'field' as the assistant message's reasoning_content, 'none' to leave it out",
    )
    p.set_defaults(func=run)


def out_conflict(out: Path, inputs: Sequence[Path]) -> str | None:
    """Why ``out`` must not be written, given the results ``inputs`` (None: it may be).

    Writing into a results directory (or over a results file) would overwrite results, or leave a JSONL file
    that ``scale report``/``scale eval`` would then read as results.
    """
    if out.is_dir():
        return f"--out {out} is a directory; give the JSONL file to write"
    target = out.resolve()
    for given in inputs:
        src = given.resolve()
        if target == src:
            return f"--out {out} is one of the results files read; it would be overwritten"
        if given.is_dir() and target.is_relative_to(src):
            return (f"--out {out} is inside the results directory {given}; scale report/eval read every *.jsonl "
                    "there, so write the traces outside it")
        if given.is_file() and target.parent == src.parent and target.suffix == ".jsonl":
            return (f"--out {out} is beside the results file {given}; scale report/eval would read it as "
                    "results, so write the traces elsewhere")
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``scale traces``."""
    console = Console(stderr=True)
    if conflict := out_conflict(args.out, args.dirs):
        console.print(f"[red]error:[/] {conflict}", highlight=False)
        return 2
    outcome = over_results(
        args.dirs,
        lambda rows: write_traces(rows, args.out, correct_only=args.correct_only, reasoning=args.reasoning),
        console,
    )
    if outcome is None:
        return 2
    kept, dropped = outcome
    reasons = ", ".join(f"{n} {why}" for why, n in dropped.most_common()) or "none"
    console.print(
        f"kept {kept} examples in {args.out}; dropped {sum(dropped.values())} ({reasons})", highlight=False
    )
    return 0

"""``scale reproduce``: the paper's Table 1 grid against an endpoint, resumably, then our numbers beside the paper's.

Runs AIME24, AIME25, AMC23 × CoT, Majority-Voting, InftyThink, SCALE (τ = 0.2) with 8 samples under the ``paper``
settings profile, one resumable results file per cell in ``--out`` (as ``scale eval`` writes them), then writes
``table.md`` (printed too), ``report.md`` and the plots. Running the same command again runs only what is missing.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from scale_graph.baselines.context import BaselineContext
from scale_graph.cli.common import add_context_options, context_from_args
from scale_graph.cli.eval import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    interruptible,
    live_context,
    positive_float,
    positive_int,
    report_outcome,
    run_with_progress,
    samples_from_args,
)
from scale_graph.eval.datasets import DatasetError
from scale_graph.eval.files import write_text_atomic
from scale_graph.eval.metrics import RunMetrics
from scale_graph.eval.report import write_report
from scale_graph.eval.reproduce import (
    DATASETS,
    METHODS,
    Cell,
    cell_metrics,
    comparison_markdown,
    grid,
    plot_comparison,
)
from scale_graph.grading import DEFAULT_TIMEOUT, GradingPool
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError


def name_list(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """Argparse type: a comma-separated list of names, each one of ``known``."""

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown))}; choose from {','.join(known)}" if unknown
                else f"give at least one of {','.join(known)}"
            )
        return names

    return parse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale reproduce``."""
    p = sub.add_parser(
        "reproduce",
        help="run the paper's Table 1 grid against an endpoint and compare (resumable)",
        description=__doc__.split("\n\n")[1].replace("``", "") if __doc__ else None,
    )
    p.add_argument("--datasets", type=name_list(DATASETS, "data set"), default=list(DATASETS),
                   help=f"comma-separated subset of {','.join(DATASETS)} (default: all)")
    p.add_argument("--methods", type=name_list(METHODS, "method"), default=list(METHODS),
                   help=f"comma-separated subset of {','.join(METHODS)} (default: all)")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="samples per problem (default 8, the paper's; Majority-Voting: votes per problem)")
    p.add_argument("--limit", type=positive_int, help="only the first N problems of each data set (smoke run)")
    p.add_argument("--concurrency", type=positive_int, default=8,
                   help="attempts run at once (default 8; SCALE sends up to k = 8 requests per attempt)")
    p.add_argument("--out", type=Path, default=Path("reproduce-results"),
                   help="results directory: one JSONL file per cell, table.md, report.md, plots "
                   "(default reproduce-results)")
    p.add_argument("--grade-timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one grading check may take before it counts as wrong (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the per-cell lines stay)")
    add_context_options(p)
    p.set_defaults(func=run, profile="paper")


def run_grid(cells: Sequence[Cell], console: Console, pool: GradingPool, *, quiet: bool) -> int:
    """Run every cell in order with progress; the exit code. Stops at the first cell the endpoint stopped."""
    code = EXIT_OK
    for i, cell in enumerate(cells, start=1):
        job = cell.run
        total, pending = len(job.attempts()), len(job.pending())
        console.print(f"[{i}/{len(cells)}] {cell.dataset} × {cell.method}: {total} attempt{'s' * (total != 1)}, "
                      f"{total - pending} already done → {job.path}", highlight=False)
        if not pending:
            continue
        start = time.monotonic()
        outcome = interruptible(functools.partial(run_with_progress, job, console, pool, quiet=quiet), console)
        code = max(code, report_outcome(outcome, job, console))
        console.print(f"[{i}/{len(cells)}] {cell.dataset} × {cell.method} took {time.monotonic() - start:.0f} s",
                      highlight=False)
        if outcome.stopped:
            console.print("the endpoint failed: stopping the grid; run the same command again to resume",
                          highlight=False)
            return EXIT_FAILED
    return code


def write_outputs(cells: Sequence[Cell], args: argparse.Namespace, samples: int, console: Console) -> str:
    """``table.md``, ``report.md`` and the plots of whatever the cells have; returns the table's text."""
    done: list[RunMetrics] = [m for c in cells if (m := cell_metrics(c)) is not None]
    text = comparison_markdown(cells, limit=args.limit, samples=samples)
    written = [write_text_atomic(args.out / "table.md", text)]
    if done:
        written += write_report(done, args.out)
        written += [p for p in [plot_comparison(cells, args.out / "paper_vs_ours.png")] if p]
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    return text


def run(args: argparse.Namespace) -> int:
    """Run ``scale reproduce``."""
    console = Console(stderr=True)
    try:
        base_url = context_from_args(args, BaselineContext).base_url
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    if not base_url:
        console.print("[red]error:[/] scale reproduce needs an OpenAI-compatible endpoint serving the model "
                      "(e.g. vLLM serving Qwen/Qwen3-32B): give --base-url URL or set SCALE_BASE_URL",
                      highlight=False)
        return EXIT_USAGE
    samples = samples_from_args(args)
    cells: list[Cell] = []
    try:
        with live_context(args, console) as ctx, GradingPool(timeout=args.grade_timeout) as pool:
            cells = grid(ctx, args.out, datasets=args.datasets, methods=args.methods, samples=samples,
                         limit=args.limit, concurrency=args.concurrency)
            code = run_grid(cells, console, pool, quiet=args.quiet)
    except (EndpointError, LocalModelError, DatasetError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        code = EXIT_FAILED
    if cells:
        print(write_outputs(cells, args, samples, console), end="")
    return code

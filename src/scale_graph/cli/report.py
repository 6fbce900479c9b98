"""``scale report``: the metrics table of results directories, as text and Markdown, with plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scale_graph.eval.metrics import RunMetrics, compute_all
from scale_graph.eval.report import COLUMNS, stage_rows, table_rows, write_report
from scale_graph.eval.results import Row, read_dirs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale report``."""
    p = sub.add_parser(
        "report",
        help="tables and plots from eval results",
        description="Print the method × data set table (Acc, Tok with and without the scaffolding calls, Tpi, "
        "Hard%, errored attempts, time) and write report.md and PNG plots.",
    )
    p.add_argument(
        "dirs", nargs="+", type=Path, help="results directories (or files) written by scale eval/sweep"
    )
    p.add_argument("--out", type=Path, help="where report.md and the plots go (default: the first directory)")
    p.set_defaults(func=run)


def render(metrics: Sequence[RunMetrics], console: Console) -> None:
    """The main table and the token split."""
    table = Table(title="Results (Acc = pass@1 averaged over samples; Tok over all stages and solve Tok without "
                        "decompose/select/assess, prompt tok, calls, s: per attempt; errors: attempts the endpoint "
                        "rejected, counted wrong)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in {"dataset", "method"} else "right", no_wrap=True)
    for row in table_rows(metrics):
        table.add_row(*row)
    console.print(table)
    header, *rows = stage_rows(metrics)
    split = Table(title="Completion tokens per attempt by stage and mode")
    for col in header:
        split.add_column(col, justify="left" if col in {"dataset", "method"} else "right", no_wrap=True)
    for row in rows:
        split.add_row(*row)
    console.print(split)


def over_results[T](dirs: Sequence[Path], use: Callable[[list[Row]], T], console: Console) -> T | None:
    """``use`` applied to every results row in ``dirs``, or None after printing why it cannot be.

    That is a missing directory, no rows at all, or a file that is not a results file.
    """
    missing = [d for d in dirs if not d.exists()]
    if missing:
        console.print(f"[red]error:[/] no such directory: {', '.join(map(str, missing))}", highlight=False)
        return None
    try:
        rows = list(read_dirs(dirs))
        if rows:
            return use(rows)
    except (ValueError, KeyError, TypeError) as exc:
        console.print(f"[red]error:[/] not a results file: {exc}", highlight=False)
        return None
    console.print(f"[red]error:[/] no results in {', '.join(map(str, dirs))}", highlight=False)
    return None


def run(args: argparse.Namespace) -> int:
    """Run ``scale report``."""
    err = Console(stderr=True)
    metrics = over_results(args.dirs, compute_all, err)
    if metrics is None:
        return 2
    # Piped output gets a wide table rather than rich's default 80 columns.
    render(metrics, Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160))
    for path in write_report(
        metrics, args.out or (args.dirs[0] if args.dirs[0].is_dir() else args.dirs[0].parent)
    ):
        err.print(f"wrote {path}", highlight=False)
    return 0

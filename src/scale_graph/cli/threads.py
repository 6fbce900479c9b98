"""``scale threads``: the threads kept in the checkpointer, most recent first, with their status."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from scale_graph import threads
from scale_graph.api import CompiledGraph
from scale_graph.cli.common import add_store_option
from scale_graph.cli.runner import with_store

STATUS_STYLE = {"done": "green", "error": "red", "incomplete": "yellow"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale threads``."""
    p = sub.add_parser("threads", help="list the threads (runs) kept in the checkpointer",
                       description="List the threads, most recent first: status (done, error, incomplete), "
                                   "steps solved, answer and problem. An incomplete or failed thread continues "
                                   "with `scale resume THREAD`.")
    p.add_argument("--limit", type=int, default=20, help="show at most this many threads (default 20)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale threads``."""
    return with_store(args, lambda graph: show_list(graph, args))


def show_list(graph: CompiledGraph, args: argparse.Namespace) -> int:
    """Print the thread list."""
    found = threads.list_threads(graph, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(t) for t in found], indent=2, ensure_ascii=False))
        return 0
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # piped or redirected: no terminal width to fit, so do not squeeze columns
        console = Console(soft_wrap=True, width=160)
    if not found:
        console.print("no threads yet: `scale solve PROBLEM` starts one")
        return 0
    table = Table(title="SCALE threads")
    # The fixed columns keep their width; the problem column gives way when the terminal is narrow.
    for col, width in (("thread", 36), ("status", 10), ("steps", 5), ("answer", 6), ("updated (UTC)", 16)):
        table.add_column(col, no_wrap=col != "answer", overflow="fold", min_width=width)
    table.add_column("problem", overflow="ellipsis", no_wrap=True, max_width=60, min_width=8)
    for t in found:
        steps = f"{t.steps_done}/{t.steps_total}" if t.steps_total is not None else "-"
        status = f"[{STATUS_STYLE[t.status]}]{t.status}[/]"
        updated = (t.updated_at or "")[:16].replace("T", " ")
        table.add_row(t.thread_id, status, steps, t.answer or "", updated, one_line(t.problem))
    console.print(table)
    return 0


def one_line(text: str, width: int = 80) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

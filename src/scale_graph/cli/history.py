"""``scale history THREAD``: every checkpoint of a thread, newest first, with the nodes that wrote it."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.console import Console

from scale_graph import threads
from scale_graph.api import CompiledGraph
from scale_graph.cli.common import add_store_option, add_thread_arguments
from scale_graph.cli.runner import with_store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale history``."""
    p = sub.add_parser("history", help="list a thread's checkpoints and the node that wrote each",
                       description="List every checkpoint of a thread, newest first, forks included: its id "
                                   "(for `scale replay` / `scale fork`), step, the nodes whose results it holds, "
                                   "and what runs next.")
    add_thread_arguments(p)
    p.add_argument("--json", action="store_true", help="print the checkpoints as JSON")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale history``."""
    return with_store(args, lambda graph: show_history(graph, args.thread, as_json=args.json))


def show_history(graph: CompiledGraph, thread_id: str, *, as_json: bool) -> int:
    """Print the checkpoints."""
    checkpoints = threads.history(graph, thread_id)
    if as_json:
        print(json.dumps([asdict(c) for c in checkpoints], indent=2, ensure_ascii=False))
        return 0
    console = Console(soft_wrap=True)
    console.print(f"checkpoints of thread {thread_id}, newest first: id, step, written by → next, steps solved",
                  highlight=False)
    for c in checkpoints:
        moves = f"{', '.join(c.writers)} → {', '.join(threads.counted(c.next)) or '(end)'}"
        note = f"  [dim]{c.note}[/]" if c.note else ""
        console.print(f"{c.checkpoint_id}  {c.step:>3}  {moves:<32} {c.steps_done}{note}", highlight=False)
    return 0

"""``scale resume THREAD``: continue an interrupted or failed run; finished steps are not asked again."""

from __future__ import annotations

import argparse

from scale_graph import threads
from scale_graph.cli.common import add_run_options, add_thread_arguments, context_overrides
from scale_graph.cli.runner import execute


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale resume``."""
    p = sub.add_parser("resume", help="continue an interrupted or failed run",
                       description="Continue a thread from its latest checkpoint: only the steps that had not "
                                   "finished are run. The run keeps the settings it was started with; "
                                   "run-configuration flags override them (e.g. --base-url if the endpoint "
                                   "moved or is down). A finished thread: nothing runs, its result is printed "
                                   "(exit 0). A thread another process is running: refused, naming it (exit 4).")
    add_thread_arguments(p)
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale resume``."""
    return execute(args, args.thread, lambda graph, options: threads.resume(
        graph, args.thread, overrides=context_overrides(args), **options))

"""``scale replay THREAD --checkpoint ID``: run a thread again from one of its checkpoints, on a new branch."""

from __future__ import annotations

import argparse

from scale_graph import threads
from scale_graph.api import CompiledGraph, SolveResult
from scale_graph.cli.common import add_run_options, add_thread_arguments, context_overrides
from scale_graph.cli.runner import execute


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale replay``."""
    p = sub.add_parser("replay", help="run a thread again from one of its checkpoints",
                       description="Run a thread again from a checkpoint (`scale history THREAD` lists them): "
                                   "the steps after it are redone, with new model calls, on a new branch of the "
                                   "thread; the original branch stays in the history. Run-configuration flags "
                                   "override the recorded settings.")
    add_thread_arguments(p, checkpoint=True)
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale replay``."""

    def replay(graph: CompiledGraph, options: threads.RunOptions) -> SolveResult:
        checkpoint = threads.find_checkpoint(graph, args.thread, args.checkpoint)
        return threads.replay(graph, args.thread, checkpoint, overrides=context_overrides(args), **options)

    return execute(args, args.thread, replay)

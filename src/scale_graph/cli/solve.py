"""``scale solve``: solve one problem with SCALE as a new durable thread, with live progress, then the answer."""

from __future__ import annotations

import argparse

from rich.console import Console

from scale_graph import threads
from scale_graph.cli.common import InputError, add_run_options, context_from_args, read_problem
from scale_graph.cli.runner import execute, fail
from scale_graph.context import Context
from scale_graph.problem import InvalidProblem, check_problem
from scale_graph.settings import InvalidSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale solve``."""
    p = sub.add_parser("solve", help="solve one problem with SCALE",
                       description="Solve one math problem with SCALE and print the steps and the answer. "
                                   "The run is a thread in the checkpointer: `scale resume THREAD` continues it "
                                   "if it is interrupted (Ctrl-C once: the steps in flight finish and are kept; "
                                   "twice: stop at once).")
    p.add_argument("problem", nargs="?", help="the problem text, or '-' to read it from stdin")
    p.add_argument("--file", help="read the problem from this file")
    p.add_argument("--id", dest="problem_id", help="an id for the problem (kept in results and traces)")
    p.add_argument("--thread", help="the new thread's id (default: a fresh one; printed as the run starts)")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale solve`` as a new thread; the exit code (see :func:`~scale_graph.cli.runner.execute`)."""
    try:  # the settings and the problem are checked before a thread (or a model) exists: exit 2
        context = context_from_args(args, Context)
        problem = check_problem(read_problem(args.problem, args.file))
    except (InputError, InvalidProblem, InvalidSettings) as exc:
        return fail(Console(stderr=True, soft_wrap=True), exc, 2)
    thread_id = args.thread or threads.new_thread_id()
    return execute(args, thread_id, lambda graph, options: threads.start(
        graph, problem, context=context, thread_id=thread_id, problem_id=args.problem_id, **options))

"""``scale fork THREAD --checkpoint ID``: branch a thread with a changed difficulty or τ, and continue it."""

from __future__ import annotations

import argparse

from scale_graph import threads
from scale_graph.api import CompiledGraph, SolveResult
from scale_graph.cli.common import add_run_options, add_thread_arguments, context_overrides
from scale_graph.cli.runner import execute


def difficulty_change(text: str) -> tuple[int, float]:
    """Parse ``N=D`` (sub-problem number, new difficulty)."""
    number, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return int(number), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N=D (e.g. 2=0.9), got {text!r}") from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale fork``."""
    p = sub.add_parser("fork", help="branch a thread with a changed difficulty or τ, and continue it",
                       description="Branch a thread at a checkpoint in its solve loop (`scale history THREAD`: "
                                   "one whose next step is route or a solve), change sub-problem difficulties "
                                   "(--set-difficulty) and/or run settings such as --threshold, and continue: "
                                   "every sub-problem not yet solved is routed again by Eq. 4. The original "
                                   "branch stays in the history.")
    add_thread_arguments(p, checkpoint=True)
    p.add_argument("--set-difficulty", metavar="N=D", type=difficulty_change, action="append", default=[],
                   help="set sub-problem N's difficulty to D in [0, 1] (repeatable)")
    add_run_options(p)
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    """Run ``scale fork``."""
    if not args.set_difficulty and not context_overrides(args):
        args.parser.error("nothing to change: give --set-difficulty N=D and/or a setting such as --threshold")

    def fork(graph: CompiledGraph, options: threads.RunOptions) -> SolveResult:
        checkpoint = threads.find_checkpoint(graph, args.thread, args.checkpoint)
        return threads.fork(graph, args.thread, checkpoint, difficulties=dict(args.set_difficulty),
                            overrides=context_overrides(args), **options)

    return execute(args, args.thread, fork)

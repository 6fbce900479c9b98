"""The ``scale`` command: argument parsing and rendering only; every behaviour lives in the library.

Each sub-command is a module here with ``register(subparsers)``, which sets ``func`` on its parser. ``func`` takes
the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scale_graph.cli import (
    calibrate,
    fork,
    history,
    replay,
    report,
    resume,
    serve,
    show,
    solve,
    sweep,
    threads,
    traces,
    vllm,
)
from scale_graph.cli import eval as eval_command
from scale_graph.cli import reproduce as reproduce_command

COMMANDS = [solve, eval_command, sweep, reproduce_command, report, calibrate, traces, threads, show, history, resume,
            replay, fork, serve, vllm]
"""Sub-command modules, in the order ``--help`` lists them."""

EXIT_USAGE = 2
"""Bad input or arguments."""
EXIT_FAILURE = 1
"""The run could not finish (endpoint down, model missing, …)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``scale`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="scale", description="SCALE: selective test-time compute for math reasoning, on LangGraph."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scale`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Running SCALE on a thread from the command line: live progress, the result table, errors → exit codes.

Shared by every command that runs or reads threads (solve, resume, replay, fork, show, history, threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from rich.console import Console
from rich.table import Table

from scale_graph import threads
from scale_graph.api import SolveResult
from scale_graph.checkpoint import CheckpointerError
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError


class ProgressPrinter:
    """Renders the graph's custom events as one line each on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()

    def message(self, text: str) -> None:
        """Print a free-form progress line."""
        self.console.print(f"[dim]{time.monotonic() - self.start:6.1f}s[/] {text}", highlight=False)

    def __call__(self, event: dict[str, Any]) -> None:
        """Print one event."""
        kind = event.get("event")
        if kind == "candidate":
            state = f"{event['subproblems']} sub-problems" if event["valid"] else f"invalid ({event['error']})"
            self.message(f"decomposition candidate {event['index'] + 1}: {state}")
        elif kind == "decomposition":
            note = f" [yellow]({event['fallback']})[/]" if event.get("fallback") else ""
            self.message(f"chose a decomposition of {len(event['subproblems'])} sub-problems "
                         f"from {event['options']} distinct valid candidates{note}")
            for i, s in enumerate(event["subproblems"], start=1):
                self.console.print(f"         {i}. {s}", highlight=False, markup=False)
        elif kind == "preset":
            self.message(f"preset: {event['preset']}")
        elif kind == "assessed":
            note = f" [yellow]({event['fallback']})[/]" if event.get("fallback") else ""
            if event.get("forced"):
                assessed = event.get("assessed")
                scored = f"{assessed:.2f}" if assessed is not None else "none"
                note += f" [dim](forced: the original question; assessed {scored})[/]"
            self.message(f"sub-problem {event['index'] + 1}: difficulty {event['difficulty']:.2f}{note}")
        elif kind == "solving":
            self.message(f"sub-problem {event['index'] + 1}: solving with {event['mode']} …")
        elif kind == "solved":
            self.message(f"sub-problem {event['index'] + 1}: solved by {event['mode']} "
                         f"({event['completion_tokens']} tokens, {event['seconds']:.1f}s)")
        elif kind == "answer":
            if event["answer"] is not None:
                self.message(f"answer: {event['answer']}")
            else:
                self.message(f"no answer ({event.get('stop_reason') or event['fallback']})")


def render(result: SolveResult, console: Console) -> None:
    """The step table, the usage line and the answer."""
    table = Table(title="SCALE steps", show_lines=False)
    for col, kw in [("#", {"justify": "right"}), ("sub-problem", {"overflow": "fold", "max_width": 60}),
                    ("d", {"justify": "right"}), ("mode", {}), ("tokens", {"justify": "right"}),
                    ("seconds", {"justify": "right"})]:
        table.add_column(col, **kw)
    for s in result.steps:
        mode = s["mode"] + (" *" if s["fallback"] else "")
        table.add_row(str(s["index"] + 1), s["subproblem"], f"{s['difficulty']:.2f}", mode,
                      str(s["completion_tokens"]), f"{s['latency']:.1f}")
    console.print(table)
    if any(s["fallback"] for s in result.steps):
        console.print("* difficulty could not be read; scored as 1.0", highlight=False)
    per_stage = ", ".join(f"{k} {v['completion_tokens']}" for k, v in result.usage.items())
    console.print(f"completion tokens: {result.completion_tokens} ({per_stage}); "
                  f"System 2 share: {result.hard_share:.0%}", highlight=False)
    if result.decomposition_fallback:
        console.print(f"note: {result.decomposition_fallback}", highlight=False)
    if result.status == "budget_exhausted":
        console.print(f"[bold yellow]stopped after {len(result.steps)} of {len(result.subproblems)} sub-problems:"
                      f"[/] {result.stop_reason}", highlight=False)
    elif result.answer is not None:
        console.print(f"[bold]answer: {result.answer}[/]", highlight=False)
    else:
        console.print(f"[bold yellow]no answer[/] ({result.answer_fallback})", highlight=False)


EXIT_BUDGET = 3
"""A per-problem budget stopped the run (its partial steps are printed)."""

Action = Callable[[CompiledStateGraph, threads.RunOptions], SolveResult]
"""A run on a thread, given the graph (with its checkpointer) and the run options."""


def execute(args: argparse.Namespace, thread_id: str, action: Action) -> int:
    """Open the thread store, run ``action`` with live progress, print the result; returns the exit code.

    Shared by every command that runs SCALE on a thread (solve, resume, replay, fork). 3 when a per-problem
    budget stopped the run, 2 for a request that cannot be done (unknown thread or checkpoint, ...), 1 when the
    run could not finish; then the steps that did finish are kept and the message says how to continue.
    """
    err = Console(stderr=True, soft_wrap=True)
    progress = ProgressPrinter(err)
    options: threads.RunOptions = {"model_path": args.model_path}
    if not args.quiet:
        options.update(on_event=progress, progress=progress.message)

    def run(graph: CompiledStateGraph) -> int:
        try:
            result = action(graph, options)
        except threads.ThreadError:
            raise
        except (EndpointError, LocalModelError, ValueError, KeyboardInterrupt) as exc:
            code = fail(err, exc or "interrupted", 130 if isinstance(exc, KeyboardInterrupt) else 1)
            if threads.exists(graph, thread_id):
                err.print(f"the finished steps are kept: `scale resume {thread_id}` continues the run",
                          highlight=False)
            return code
        print_result(result, as_json=args.json)
        return EXIT_BUDGET if result.status == "budget_exhausted" else 0

    return with_store(args, run)


def print_result(result: SolveResult, *, as_json: bool) -> None:
    """The result on stdout: JSON (the output schema plus totals and the thread id), or the table."""
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    out = Console(file=sys.stdout, soft_wrap=True)
    render(result, out)
    out.print(f"thread: {result.thread_id}", highlight=False)


def with_store(args: argparse.Namespace, use: Callable[[CompiledStateGraph], int]) -> int:
    """Open the thread store (``--checkpointer``) and call ``use`` with the graph; returns its exit code.

    2 for an unknown thread or checkpoint (:class:`~scale_graph.threads.ThreadError`), 1 when the store
    cannot be opened.
    """
    err = Console(stderr=True, soft_wrap=True)
    try:
        with threads.open_thread_graph(args.checkpointer) as graph:
            return use(graph)
    except threads.ThreadError as exc:
        return fail(err, exc, 2)
    except CheckpointerError as exc:
        return fail(err, exc, 1)


def fail(err: Console, message: object, code: int) -> int:
    """Print ``error: message`` on stderr and return ``code``."""
    err.print(f"[red]error:[/] {message}", highlight=False)
    return code

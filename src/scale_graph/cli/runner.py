"""Running SCALE on a thread from the command line: live progress, the result table, errors → exit codes.

Shared by every command that runs or reads threads (solve, resume, replay, fork, show, history, threads).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from scale_graph import threads
from scale_graph.api import SolveResult
from scale_graph.checkpoint import CheckpointerError
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError
from scale_graph.settings import InvalidSettings

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""What a terminal may act on instead of showing: C0 controls but tab and newline (ESC starts every escape
sequence, CR rewrites the line), DEL, C1 controls (CSI, OSC, … as single characters), and the bidirectional
overrides that reorder what is shown."""


def terminal_text(text: object) -> str:
    r"""``text`` with everything a terminal would act on shown as an escape instead (````, ``‮``).

    Model text (a sub-problem, an answer, an error quoting a reply) goes through this before it is printed, so a
    reply cannot clear the screen, move the cursor, set the title, or hide text. ``--json`` prints raw JSON,
    which escapes control characters itself.
    """
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", str(text))


def safe(text: object) -> str:
    """``text`` for a rich markup string: terminal controls neutralised and ``[...]`` markup escaped."""
    return escape(terminal_text(text))


class ProgressPrinter:
    """Renders the graph's custom events as one line each on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()

    def message(self, text: str) -> None:
        """Print a progress line written in rich markup (outside text in it must have gone through :func:`safe`)."""
        self.console.print(f"[dim]{time.monotonic() - self.start:6.1f}s[/] {text}", highlight=False)

    def note(self, text: str) -> None:
        """Print a plain progress note (no markup: it may quote settings or model names)."""
        self.message(safe(text))

    def __call__(self, event: dict[str, Any]) -> None:
        """Print one event."""
        kind = event.get("event")
        if kind == "candidate":
            state = f"{event['subproblems']} sub-problems" if event["valid"] else f"invalid ({safe(event['error'])})"
            self.message(f"decomposition candidate {event['index'] + 1}: {state}")
        elif kind == "decomposition":
            note = f" [yellow]({safe(event['fallback'])})[/]" if event.get("fallback") else ""
            self.message(f"chose a decomposition of {len(event['subproblems'])} sub-problems "
                         f"from {event['options']} distinct valid candidates{note}")
            for i, s in enumerate(event["subproblems"], start=1):
                self.console.print(f"         {i}. {terminal_text(s)}", highlight=False, markup=False)
        elif kind == "preset":
            self.message(f"preset: {safe(event['preset'])}")
        elif kind == "assessed":
            note = f" [yellow]({safe(event['fallback'])})[/]" if event.get("fallback") else ""
            if event.get("forced"):
                assessed = event.get("assessed")
                scored = f"{assessed:.2f}" if assessed is not None else "none"
                note += f" [dim](forced: the original question; assessed {scored})[/]"
            self.message(f"sub-problem {event['index'] + 1}: difficulty {event['difficulty']:.2f}{note}")
        elif kind == "solving":
            self.message(f"sub-problem {event['index'] + 1}: solving with {safe(event['mode'])} …")
        elif kind == "solved":
            self.message(f"sub-problem {event['index'] + 1}: solved by {safe(event['mode'])} "
                         f"({event['completion_tokens']} tokens, {event['seconds']:.1f}s)")
        elif kind == "answer":
            if event["answer"] is not None:
                self.message(f"answer: {safe(event['answer'])}")
            else:
                self.message(f"no answer ({safe(event.get('stop_reason') or event['fallback'])})")


def render(result: SolveResult, console: Console) -> None:
    """The step table, the usage line and the answer (model text neutralised: see :func:`terminal_text`)."""
    table = Table(title="SCALE steps", show_lines=False)
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right"}), ("sub-problem", {"overflow": "fold", "max_width": 60}),
        ("d", {"justify": "right"}), ("mode", {}), ("tokens", {"justify": "right"}), ("seconds", {"justify": "right"})]
    for col, kw in columns:
        table.add_column(col, **kw)
    for s in result.steps:
        mode = s["mode"] + (" *" if s["fallback"] else "")
        table.add_row(str(s["index"] + 1), Text(terminal_text(s["subproblem"])), f"{s['difficulty']:.2f}",
                      Text(terminal_text(mode)), str(s["completion_tokens"]), f"{s['latency']:.1f}")
    console.print(table)
    if any(s["fallback"] for s in result.steps):
        console.print("* difficulty could not be read; scored as 1.0", highlight=False)
    per_stage = ", ".join(f"{k} {v['completion_tokens']}" for k, v in result.usage.items())
    console.print(f"completion tokens: {result.completion_tokens} ({per_stage}); "
                  f"System 2 share: {result.hard_share:.0%}", highlight=False)
    if result.decomposition_fallback:
        console.print(f"note: {safe(result.decomposition_fallback)}", highlight=False)
    if result.status == "budget_exhausted":
        console.print(f"[bold yellow]stopped after {len(result.steps)} of {len(result.subproblems)} sub-problems:"
                      f"[/] {safe(result.stop_reason)}", highlight=False)
    elif result.answer is not None:
        console.print(f"[bold]answer: {safe(result.answer)}[/]", highlight=False)
    else:
        console.print(f"[bold yellow]no answer[/] ({safe(result.answer_fallback)})", highlight=False)


EXIT_BUDGET = 3
"""A per-problem budget stopped the run (its partial steps are printed)."""

Graph = CompiledStateGraph[Any, Any, Any, Any]
"""A compiled graph with its checkpointer (any state, context, input and output)."""

Action = Callable[[Graph, threads.RunOptions], SolveResult]
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
        options["on_event"] = progress
        options["progress"] = progress.note

    def run(graph: Graph) -> int:
        try:
            result = action(graph, options)
        except threads.ThreadError:
            raise
        except InvalidSettings as exc:  # e.g. a thread's recorded settings that are no longer accepted
            return fail(err, f"{exc} (set it with its flag, e.g. --{exc.field.replace('_', '-')})", 2)
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
    out.print(f"thread: {safe(result.thread_id)}", highlight=False)


def with_store(args: argparse.Namespace, use: Callable[[Graph], int]) -> int:
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
    """Print ``error: message`` on stderr (neutralised: it may quote model or endpoint text); return ``code``."""
    err.print(f"[red]error:[/] {safe(message)}", highlight=False)
    return code

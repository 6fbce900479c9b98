"""Running SCALE on a thread from the command line: live progress, the result table, errors → exit codes.

Shared by every command that runs or reads threads (solve, resume, replay, fork, show, history, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
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
    for s in result.steps:  # what the * marks: an unreadable score, a shrunk budget, missing usage, ...
        if s["fallback"]:
            console.print(f"* step {s['index'] + 1}: {safe(s['fallback'])}", highlight=False)
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
EXIT_BUSY = 4
"""Another process is running the thread; nothing was done (the message names it)."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT, as shells report it); the finished steps are kept."""

Graph = CompiledStateGraph[Any, Any, Any, Any]
"""A compiled graph with its checkpointer (any state, context, input and output)."""

Action = Callable[[Graph, threads.RunOptions], SolveResult]
"""A run on a thread, given the graph (with its checkpointer) and the run options."""


def execute(args: argparse.Namespace, thread_id: str, action: Action) -> int:
    """Open the thread store, run ``action`` with live progress, print the result; returns the exit code.

    Shared by every command that runs SCALE on a thread (solve, resume, replay, fork). The thread's run lock is
    held throughout (:func:`~scale_graph.threads.running`): 4 when another process holds it. 3 when a per-problem
    budget stopped the run, 2 for a request that cannot be done (unknown thread or checkpoint, ...), 1 when the
    run could not finish, 130 when Ctrl-C stopped it; then the steps that did finish are kept and the message says
    how to continue. 0 for ``resume`` of a thread that had already finished (it says so, and prints the result).
    """
    err = Console(stderr=True, soft_wrap=True)
    progress = ProgressPrinter(err)
    options: threads.RunOptions = {"model_path": args.model_path}
    if not args.quiet:
        options["on_event"] = progress
        options["progress"] = progress.note

    def run(graph: Graph) -> int:
        try:
            with threads.running(graph, thread_id), interruptible(thread_id):
                result = action(graph, options)
        except threads.ThreadBusy as exc:
            return fail(err, exc, EXIT_BUSY)
        except threads.ThreadFinished as exc:
            err.print(safe(exc), highlight=False)
            print_result(exc.result, as_json=args.json)
            return 0
        except threads.ThreadError:
            raise
        except InvalidSettings as exc:  # e.g. a thread's recorded settings that are no longer accepted
            return fail(err, f"{exc} (set it with its flag, e.g. --{exc.field.replace('_', '-')})", 2)
        except KeyboardInterrupt:
            note = (f"the finished steps are kept; `scale resume {thread_id}` continues the run"
                    if threads.exists(graph, thread_id) else "before the run began: nothing was written")
            err.print(f"[yellow]interrupted:[/] {safe(note)}", highlight=False)
            return EXIT_INTERRUPTED
        except (EndpointError, LocalModelError, ValueError) as exc:
            code = fail(err, exc, 1)
            if threads.exists(graph, thread_id):
                err.print(safe(how_to_continue(graph, thread_id, exc)), highlight=False)
            return code
        print_result(result, as_json=args.json)
        return EXIT_BUDGET if result.status == "budget_exhausted" else 0

    return with_store(args, run)


def how_to_continue(graph: Graph, thread_id: str, exc: Exception) -> str:
    """The note after a run that could not finish: the command that continues it, and where else it can run.

    Resuming runs on the endpoint the thread recorded; when that endpoint is the trouble, running the same command
    again fails the same way, so the note names the flag that points the run elsewhere.
    """
    command = f"scale resume {thread_id}"
    kept = f"the finished steps are kept: `{command}` continues the run"
    if isinstance(exc, EndpointError):
        recorded = threads.recorded_context(graph, thread_id)
        flag = "--system2-base-url" if exc.url == recorded.get("system2_base_url") else "--base-url"
        return (f"{kept} on {exc.url} when it answers again; to continue on another endpoint: "
                f"`{command} {flag} URL` (with --model NAME if it serves another model)")
    if isinstance(exc, LocalModelError):
        return f"{kept}; to continue on an OpenAI-compatible endpoint instead: `{command} --base-url URL`"
    return kept


@contextmanager
def interruptible(thread_id: str) -> Iterator[None]:
    """Two-stage Ctrl-C for the block: the first stops the run once the steps in flight finish, the second at once.

    The first Ctrl-C lets the steps in flight finish, so their results are kept, then stops the run with
    :class:`KeyboardInterrupt`. A second stops the process at once (exit 130, as a ``kill`` would: the steps in
    flight are asked again on resume, nothing finished is lost).

    Only in the main thread (where Python delivers signals); elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = False

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        if pressed:
            _say(f"stopped at once: `scale resume {thread_id}` continues the run (`scale show {thread_id}`: how far "
                 "it got); the steps that were in flight will be asked again")
            os._exit(EXIT_INTERRUPTED)
        pressed = True
        _say("interrupting: letting the steps in flight finish so their results are kept (Ctrl-C again to stop "
             "at once)")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(text: str) -> None:
    """Write a line to stderr from a signal handler (unbuffered: it may interrupt a buffered write)."""
    os.write(sys.stderr.fileno(), f"{terminal_text(text)}\n".encode(errors="replace"))


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

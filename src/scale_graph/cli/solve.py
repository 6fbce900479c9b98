"""``scale solve``: solve one problem with SCALE, showing live progress, then the step table and the answer."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from scale_graph.api import SolveResult, endpoint, solve
from scale_graph.cli.common import InputError, add_context_options, context_from_args, read_problem
from scale_graph.context import InvalidProblem, check_problem
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError

EXIT_BUDGET = 3
"""A per-problem budget stopped the run (its partial steps are printed)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``scale solve``."""
    p = sub.add_parser("solve", help="solve one problem with SCALE",
                       description="Solve one math problem with SCALE and print the steps and the answer.")
    p.add_argument("problem", nargs="?", help="the problem text, or '-' to read it from stdin")
    p.add_argument("--file", help="read the problem from this file")
    p.add_argument("--id", dest="problem_id", help="an id for the problem (kept in results and traces)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (the output schema)")
    p.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    add_context_options(p)
    p.set_defaults(func=run)


class ProgressPrinter:
    """Renders the graph's custom events as one line each on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()
        self.candidates = 0

    def message(self, text: str) -> None:
        """Print a free-form progress line."""
        self.console.print(f"[dim]{time.monotonic() - self.start:6.1f}s[/] {text}", highlight=False)

    def __call__(self, event: dict[str, Any]) -> None:
        """Print one event."""
        kind = event.get("event")
        if kind == "candidate":
            self.candidates += 1
            state = f"{event['subproblems']} sub-problems" if event["valid"] else f"invalid ({event['error']})"
            self.message(f"decomposition candidate {event['index'] + 1}: {state}")
        elif kind == "decomposition":
            note = f" [yellow]({event['fallback']})[/]" if event.get("fallback") else ""
            self.message(f"chose a decomposition of {len(event['subproblems'])} sub-problems "
                         f"from {event['options']} distinct valid candidates{note}")
            for i, s in enumerate(event["subproblems"], start=1):
                self.console.print(f"         {i}. {s}", highlight=False, markup=False)
        elif kind == "assessed":
            note = f" [yellow]({event['fallback']})[/]" if event.get("fallback") else ""
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


def run(args: argparse.Namespace) -> int:
    """Run ``scale solve``: 0 when it finished, 3 when a budget stopped it, 2 on bad input, 1 on failure."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        problem = check_problem(read_problem(args.problem, args.file))
    except (InputError, InvalidProblem) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    progress = ProgressPrinter(err)
    on_event = None if args.quiet else progress
    say = None if args.quiet else progress.message
    try:
        with endpoint(context_from_args(args), model_path=args.model_path, progress=say) as ctx:
            if say:
                say(f"model endpoint {ctx.base_url}; τ={ctx.threshold}, k={ctx.candidates}, "
                    f"assess={ctx.assess}, preset={ctx.preset}")
            result = solve(problem, context=ctx, problem_id=args.problem_id, on_event=on_event)
    except (EndpointError, LocalModelError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        render(result, Console(file=sys.stdout, soft_wrap=True))
    return EXIT_BUDGET if result.status == "budget_exhausted" else 0

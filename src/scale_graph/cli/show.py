"""``scale show THREAD``: a thread's problem, status, sub-problems with their difficulties, and the steps so far.

Model text (sub-problems, solutions, answers, a recorded error) is printed through the runner's terminal-safe
helpers, so it cannot emit escape sequences; ``--json`` prints raw JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.console import Console

from scale_graph import threads
from scale_graph.api import CompiledGraph, SolveResult
from scale_graph.cli.common import add_store_option, add_thread_arguments
from scale_graph.cli.runner import render, safe, terminal_text, with_store
from scale_graph.cli.threads import STATUS_STYLE
from scale_graph.nodes.route import select_mode


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale show``."""
    p = sub.add_parser("show", help="show a thread: status, sub-problems and the steps so far",
                       description="Show a thread at its latest checkpoint: status, problem, the chosen "
                                   "sub-problems with their difficulties, and the solved steps.")
    add_thread_arguments(p)
    p.add_argument("--json", action="store_true", help="print the thread's state values as JSON")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale show``."""
    return with_store(args, lambda graph: show(graph, args.thread, as_json=args.json))


def show(graph: CompiledGraph, thread_id: str, *, as_json: bool) -> int:
    """Print one thread."""
    summary = threads.info(graph, thread_id)
    values = threads.snapshot(graph, thread_id).values
    if as_json:
        print(json.dumps({"thread": asdict(summary), "values": values}, indent=2, ensure_ascii=False))
        return 0
    console = Console(soft_wrap=True)
    tau = threads.recorded_context(graph, thread_id).get("threshold")
    console.print(f"thread {thread_id}: [{STATUS_STYLE[summary.status]}]{summary.status}[/]"
                  + (f" (next: {', '.join(summary.next)})" if summary.next else ""), highlight=False)
    if summary.error:
        console.print(f"[red]error:[/] {safe(summary.error)}", highlight=False)
    console.print(f"problem: {terminal_text(summary.problem)}", highlight=False, markup=False)
    assessments = values.get("assessments") or {}
    for i, sub in enumerate(values.get("subproblems") or []):
        scored = assessments.get(str(i))
        plan = "" if scored is None or tau is None else f" → {select_mode(scored['difficulty'], tau)}"
        d = "not scored yet" if scored is None else f"d={scored['difficulty']:.2f}{plan}"
        console.print(f"  {i + 1}. {safe(sub)}  [dim]({d})[/]", highlight=False)
    result = SolveResult.from_state(values, thread_id)
    if summary.status != "done":
        result.answer_fallback = f"run {summary.status}: `scale resume {thread_id}` continues it"
    render(result, console)
    return 0

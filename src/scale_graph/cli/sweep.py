"""``scale sweep``: one eval per threshold τ, token budget and/or System 2 budget into one directory, then the plots.

``--thresholds 0.2,0.5,0.8`` sweeps τ; ``--deep-max-tokens 1024,2048,4096`` sweeps the System 2 budget with
System 1's fixed (the paper's Figure 2); ``--token-budgets 600,1200`` runs SCALE routed under each per-problem token
budget instead of a fixed τ, and compares its accuracy at equal tokens with the fixed-τ runs in the directory
(equal_tokens.md). System 2 budgets combine with each τ and each token budget. Each point is an ordinary resumable
run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
from collections.abc import Callable

from rich.console import Console

from scale_graph.cli.eval import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_eval_options,
    interruptible,
    live_context,
    load,
    report_outcome,
    run_with_progress,
    samples_from_args,
)
from scale_graph.eval.equal_tokens import write_comparison
from scale_graph.eval.methods import get_method
from scale_graph.eval.metrics import compute_all
from scale_graph.eval.report import write_report
from scale_graph.eval.results import read_dirs
from scale_graph.eval.runner import EvalRun
from scale_graph.grading import GradingPool
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError


def number_list[T](convert: Callable[[str], T]) -> Callable[[str], list[T]]:
    """Argparse type: a comma-separated list of numbers."""

    def parse(text: str) -> list[T]:
        try:
            values = [convert(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one number")
        return values

    return parse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale sweep``."""
    p = sub.add_parser(
        "sweep",
        help="τ sweep or System 2 budget sweep, with plots",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--thresholds", type=number_list(float), help="τ values, e.g. 0.2,0.5,0.8")
    p.add_argument(
        "--deep-max-tokens",
        dest="deep_max_tokens",
        type=number_list(int),
        help="System 2 budgets, e.g. 1024,2048,4096",
    )
    p.add_argument(
        "--token-budgets",
        dest="token_budgets",
        type=number_list(int),
        help="per-problem token budgets to route under instead of τ, e.g. 600,1200 (compared at equal tokens "
        "with the fixed-τ runs: equal_tokens.md)",
    )
    add_eval_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``scale sweep``."""
    console = Console(stderr=True)
    if not args.thresholds and not args.deep_max_tokens and not args.token_budgets:
        console.print("[red]error:[/] give --thresholds, --token-budgets and/or --deep-max-tokens", highlight=False)
        return EXIT_USAGE
    for flag, values in (("--deep-max-tokens", args.deep_max_tokens), ("--token-budgets", args.token_budgets)):
        if values and min(values) < 1:
            console.print(f"[red]error:[/] {flag} values must be at least 1", highlight=False)
            return EXIT_USAGE
    dataset = load(args, console)
    if dataset is None:
        return EXIT_USAGE
    routes: list[dict[str, float | int | None]] = [{"threshold": t, "token_budget": None}  # fixed τ
                                                   for t in args.thresholds or []]
    routes += [{"token_budget": b} for b in args.token_budgets or []]
    points = [{**route, **({"system2_max_tokens": budget} if budget is not None else {})}
              for route, budget in itertools.product(routes or [{}], args.deep_max_tokens or [None])]
    code = EXIT_OK
    try:
        with live_context(args, console) as base, GradingPool(timeout=args.grade_timeout) as pool:
            for changes in points:
                job = EvalRun(
                    dataset=dataset,
                    method=get_method(args.method),
                    context=dataclasses.replace(base, **changes),
                    out_dir=args.out,
                    samples=samples_from_args(args),
                    limit=args.limit,
                    concurrency=args.concurrency,
                )
                outcome = interruptible(functools.partial(run_with_progress, job, console, pool, quiet=args.quiet),
                                        console)
                code = max(code, report_outcome(outcome, job, console))
                if outcome.stopped:
                    return EXIT_FAILED
    except (EndpointError, LocalModelError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    metrics = compute_all(read_dirs([args.out]))
    for path in [*write_report(metrics, args.out), *write_comparison(metrics, args.out)]:
        console.print(f"wrote {path}", highlight=False)
    return code

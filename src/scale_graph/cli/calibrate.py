"""``scale calibrate RESULTS_DIR``: System 1 against System 2 on an eval run's sub-problems, by difficulty d.

Every sub-problem of the SCALE attempts in RESULTS_DIR is answered by both modes with the run's own Eq. 5 context
(the mode the run used is reused from its results), the answers are judged by math-verify equivalence, and the
report says, per d bucket, how often they disagree and what each mode costs, with the AUROC of d as a predictor of
disagreement. Resumable: run the same command again to finish an interrupted calibration.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from scale_graph.api import endpoint
from scale_graph.cli.common import setting_type
from scale_graph.cli.eval import EXIT_FAILED, EXIT_USAGE, interruptible, positive_float, positive_int, report_outcome
from scale_graph.context import Context
from scale_graph.eval.calibrate import (
    DEFAULT_BUCKETS,
    OUT_SUBDIR,
    RUN_SETTINGS,
    Calibration,
    CalibrationOutcome,
    Item,
    run_calibration,
    write_report,
)
from scale_graph.eval.results import Row, read_rows
from scale_graph.grading import DEFAULT_TIMEOUT, GradingPool
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError, served_model_name
from scale_graph.settings import InvalidSettings

_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--base-url", "base_url", str, "OpenAI-compatible endpoint (default $SCALE_BASE_URL; none: the embedded model)"),
    ("--model", "model", str, "model name (default $SCALE_MODEL, else the endpoint's first model)"),
    ("--preset", "preset", str, "the run's preset unless given: auto, prompted, qwen3-hybrid or paired"),
    ("--system1-max-tokens", "system1_max_tokens", int, "System 1 budget (default: the run's)"),
    ("--system2-max-tokens", "system2_max_tokens", int, "System 2 budget (default: the run's)"),
    ("--temperature", "temperature", float, "sampling temperature (default: the run's, else the preset's)"),
    ("--top-p", "top_p", float, "nucleus top-p (default: the run's, else the preset's)"),
    ("--top-k", "top_k", int, "top-k (default: the run's, else the preset's)"),
    ("--max-model-len", "max_model_len", int, "the endpoint's context length (default: learned from the endpoint)"),
    ("--request-timeout", "request_timeout", float, "seconds to wait for one model reply (default 600)"),
]
"""The run-configuration flags of this command: the endpoint, and the run settings it may override."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="does d predict where System 1 and System 2 disagree? (per d bucket, AUROC, plot; resumable)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="a results directory of `scale eval`")
    p.add_argument("--out", type=Path, default=None,
                   help=f"where calibration.jsonl, calibration.md and calibration.png go (default "
                        f"RESULTS_DIR/{OUT_SUBDIR}; not RESULTS_DIR itself, which `scale report` reads)")
    p.add_argument("--limit", type=positive_int, help="only the first N sub-problems (in results order)")
    p.add_argument("--concurrency", type=positive_int, default=2, help="sub-problems asked at once (default 2)")
    p.add_argument("--buckets", type=positive_int, default=DEFAULT_BUCKETS,
                   help=f"d buckets over [0, 1] in the report (default {DEFAULT_BUCKETS})")
    p.add_argument("--fresh", action="store_true",
                   help="ask both modes even where the run recorded one (default: reuse the run's own solution)")
    p.add_argument("--grade-timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                   help=f"seconds one equivalence check may take (default {DEFAULT_TIMEOUT:g}; a timeout is a "
                        "disagreement)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    group = p.add_argument_group("endpoint and run settings")
    for flag, dest, typ, help_text in _FLAGS:
        kwargs: dict[str, Any] = {"dest": dest, "type": setting_type(dest, typ), "default": None, "help": help_text}
        if dest == "preset":
            kwargs["choices"] = ["auto", "prompted", "qwen3-hybrid", "paired"]
        group.add_argument(flag, **kwargs)
    group.add_argument("--model-path", default=None,
                       help="serve this local GGUF with the embedded server (default $SCALE_MODEL_PATH)")
    p.set_defaults(func=run)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {dest: getattr(args, dest) for _, dest, _, _ in _FLAGS if getattr(args, dest) is not None}


def calibrate_with_progress(calibration: Calibration, console: Console, pool: GradingPool, *,
                            quiet: bool = False) -> CalibrationOutcome:
    """Run ``calibration`` with a progress bar on ``console`` (running disagreement rate)."""
    total = len(calibration.items())
    rows = read_rows(calibration.path)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]

    def stats() -> str:
        judged = [r for r in rows if r.get("agree") is not None and r.get("model") == calibration.model]
        if not judged:
            return ""
        return f"disagree {100 * sum(not r['agree'] for r in judged) / len(judged):.0f}% of {len(judged)}"

    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("calibrate", total=total, completed=total - len(calibration.pending()),
                                 stats=stats())

        def on_row(row: Row) -> None:
            rows.append(row)
            progress.update(task, advance=1, stats=stats())

        def on_failure(item: Item, exc: BaseException) -> None:
            key = item.key(calibration.model)
            progress.console.print(f"[yellow]sub-problem {key[3] + 1} of {key[1]} #{key[2]} failed:[/] {exc}",
                                   highlight=False)

        return run_calibration(calibration, on_row=on_row, on_failure=on_failure, pool=pool)


def run(args: argparse.Namespace) -> int:
    """Run ``scale calibrate``."""
    console = Console(stderr=True)
    out: Path = args.out if args.out is not None else args.results / OUT_SUBDIR
    say: Callable[[str], None] | None = None if args.quiet else (lambda m: console.print(m, highlight=False))
    try:
        base = Context.from_mapping(_given(args))
    except InvalidSettings as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    if not args.results.is_dir():
        console.print(f"[red]error:[/] {args.results} is not a directory of results", highlight=False)
        return EXIT_USAGE
    try:
        with endpoint(base, model_path=args.model_path, progress=say, slots=2 * args.concurrency) as live, \
                GradingPool(timeout=args.grade_timeout) as pool:
            if live.model is None and live.base_url:
                live = dataclasses.replace(live, model=served_model_name(live.base_url, live.api_key))
            calibration = Calibration(results_dir=args.results, out_dir=out, context=live,
                                      explicit=frozenset(_given(args)) & frozenset(RUN_SETTINGS), limit=args.limit,
                                      concurrency=args.concurrency, fresh=args.fresh)
            if not calibration.items():
                console.print(f"[red]error:[/] no solved SCALE sub-problems in {args.results} (run `scale eval "
                              "--method scale` into it first)", highlight=False)
                return EXIT_USAGE
            outcome = interruptible(functools.partial(calibrate_with_progress, calibration, console, pool,
                                                      quiet=args.quiet), console)
    except (EndpointError, LocalModelError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    for path in write_report(read_rows(calibration.path), out, buckets=args.buckets, source=args.results):
        console.print(f"wrote {path}", highlight=False)
    return report_outcome(outcome, calibration.path, console, what="sub-problems")

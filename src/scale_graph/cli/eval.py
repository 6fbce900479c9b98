"""``scale eval``: run one method on a data set, resumably, with a progress bar; rows go to ``--out``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from langsmith import utils as langsmith_utils
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from scale_graph.api import endpoint
from scale_graph.baselines.context import BaselineContext
from scale_graph.cli.common import add_context_options, context_from_args
from scale_graph.context import PROFILES, Context
from scale_graph.eval.calibrate import CalibrationOutcome
from scale_graph.eval.datasets import Dataset, DatasetError, load_dataset
from scale_graph.eval.methods import METHODS, get_method
from scale_graph.eval.results import Row, read_rows
from scale_graph.eval.runner import EvalOutcome, EvalRun, run_eval
from scale_graph.grading import DEFAULT_TIMEOUT, GradingPool
from scale_graph.local import LocalModelError
from scale_graph.models import EndpointError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def positive_int(text: str) -> int:
    """Argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """The options ``scale eval`` and ``scale sweep`` share."""
    p.add_argument(
        "--dataset",
        required=True,
        help="aime24, aime25, amc23, math500, gsm8k_dev, or a JSONL file with id, problem, answer",
    )
    p.add_argument(
        "--method",
        default="scale",
        choices=list(METHODS),
        help="scale (default), cot, majority, inftythink, all-fast (τ=1) or all-deep (τ=-1)",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="samples per problem: independent attempts (Acc = pass@1 averaged over them); for "
        "majority, the votes inside one attempt (default 1; 8 with --profile paper)",
    )
    p.add_argument("--limit", type=positive_int, help="only the first N problems")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=2,
        help="attempts run at once (default 2; the embedded model gets at least this many slots)",
    )
    p.add_argument("--out", required=True, type=Path, help="results directory (one JSONL file per run)")
    p.add_argument(
        "--grade-timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds one grading check may take before it counts as wrong (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--rounds", type=positive_int, help="inftythink: most reasoning rounds (default 4)")
    p.add_argument(
        "--round-max-tokens",
        dest="round_max_tokens",
        type=positive_int,
        help="inftythink: budget of one round (default 1024)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--experiment", help="LangSmith: trace every attempt into a project of this name (needs "
                   "LANGSMITH_TRACING=true and LANGSMITH_API_KEY; nothing is sent without them)")
    add_context_options(p)


def samples_from_args(args: argparse.Namespace) -> int:
    """``--samples``, else the ``--profile``'s number of samples (``paper``: 8), else 1."""
    if args.samples is not None:
        return int(args.samples)
    return int(PROFILES.get(getattr(args, "profile", None) or "", {}).get("samples", 1))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``scale eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate a method on a data set (resumable)",
        description="Run a method on a data set, one results row per attempt in --out. Running "
        "the same command again skips the attempts already done.",
    )
    add_eval_options(p)
    p.set_defaults(func=run)


def _stats(rows: list[Row], failed: int) -> str:
    if not rows:
        return ""
    acc = sum(bool(r["correct"]) for r in rows) / len(rows)
    ran = [r for r in rows if not r.get("error")]
    tok = sum(r["tokens"]["completion"] for r in ran) / max(1, len(ran))
    errored = len(rows) - len(ran)
    note = f" · [yellow]{errored} errored[/]" if errored else ""
    note += f" · [red]{failed} failed[/]" if failed else ""
    return f"acc {100 * acc:.1f}% · {tok:.0f} tok/attempt{note}"


def run_with_progress(
    run: EvalRun, console: Console, pool: GradingPool, *, quiet: bool = False
) -> EvalOutcome:
    """Run ``run`` with a progress bar (ETA, running accuracy, tokens per attempt) on ``console``."""
    rows = read_rows(run.path)
    total = len(run.attempts())
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
    ]
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(
            run.run_id, total=total, completed=min(len(rows), total), stats=_stats(rows, 0)
        )
        failures = 0

        def on_row(row: Row) -> None:
            rows.append(row)
            if row.get("error"):
                progress.console.print(
                    f"[yellow]attempt {row['problem_id']} #{row['sample']} rejected by the endpoint (recorded, "
                    f"counts as wrong):[/] {row['error']}", highlight=False,
                )
            progress.update(task, advance=1, stats=_stats(rows, failures))

        def on_failure(problem_id: str, sample: int, exc: BaseException) -> None:
            nonlocal failures
            failures += 1
            progress.console.print(
                f"[yellow]attempt {problem_id} #{sample} failed:[/] {exc}", highlight=False
            )
            progress.update(task, stats=_stats(rows, failures))

        return run_eval(run, on_row=on_row, on_failure=on_failure, pool=pool)


def interruptible[T](work: Callable[[], T], console: Console) -> T:
    """Run ``work``; on Ctrl-C exit at once with status 130.

    Every finished attempt is already on disk. Leaving through the normal clean-up would wait for the embedded
    model to finish the generations in flight, which can take minutes on a CPU.
    """
    try:
        return work()
    except KeyboardInterrupt:
        console.print("interrupted: finished attempts are saved; run the same command again to resume",
                      highlight=False)
        os._exit(130)


def report_outcome(outcome: EvalOutcome | CalibrationOutcome, path: Path | EvalRun, console: Console, *,
                   what: str = "attempts") -> int:
    """Print what a resumable job did to its rows file; the exit code (1 when some failed or the job stopped).

    ``path`` is an eval run (its results file) or a calibration's rows file; ``what`` names the items.
    Attempts the endpoint rejected are recorded (as wrong) and do not change the exit code.
    """
    errored = getattr(outcome, "errored", 0)
    rejected = f" ({errored} rejected by the endpoint, recorded as wrong)" if errored else ""
    console.print(
        f"{path.path if isinstance(path, EvalRun) else path}: {outcome.done} {what} done now{rejected}, "
        f"{outcome.skipped} already there, {len(outcome.failed)} failed",
        highlight=False,
    )
    if outcome.stopped:
        console.print(f"[red]stopped:[/] {outcome.stopped}", highlight=False)
    if outcome.failed:
        console.print(f"run the same command again to retry the failed {what}", highlight=False)
        return EXIT_FAILED
    return EXIT_OK


@contextmanager
def live_context(args: argparse.Namespace, console: Console) -> Iterator[Context]:
    """The run's Context with a live endpoint (the embedded model, started once, when none is configured)."""
    say: Callable[[str], None] | None = None if args.quiet else (lambda m: console.print(m, highlight=False))
    with endpoint(
        context_from_args(args, BaselineContext), model_path=args.model_path, progress=say, slots=args.concurrency
    ) as ctx:
        yield ctx


def load(args: argparse.Namespace, console: Console) -> Dataset | None:
    """The data set named on the command line, or None after printing why it cannot be used."""
    try:
        return load_dataset(args.dataset)
    except DatasetError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return None


def start_experiment(name: str | None, console: Console) -> str | None:
    """Point LangSmith tracing at project ``name`` when tracing is on; say so when it is off."""
    if name and langsmith_utils.tracing_is_enabled():
        os.environ["LANGSMITH_PROJECT"] = name
        console.print(f"tracing every attempt to LangSmith project {name!r}", highlight=False)
    elif name:
        console.print("note: --experiment given but LangSmith tracing is off (set LANGSMITH_TRACING=true and "
                      "LANGSMITH_API_KEY); nothing is sent", highlight=False)
    return name


def run(args: argparse.Namespace) -> int:
    """Run ``scale eval``."""
    console = Console(stderr=True)
    dataset = load(args, console)
    if dataset is None:
        return EXIT_USAGE
    try:
        with live_context(args, console) as ctx, GradingPool(timeout=args.grade_timeout) as pool:
            job = EvalRun(
                dataset=dataset,
                method=get_method(args.method),
                context=ctx,
                out_dir=args.out,
                samples=samples_from_args(args),
                limit=args.limit,
                concurrency=args.concurrency,
                experiment=start_experiment(getattr(args, "experiment", None), console),
            )
            outcome = interruptible(lambda: run_with_progress(job, console, pool, quiet=args.quiet), console)
    except (EndpointError, LocalModelError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    return report_outcome(outcome, job, console)

"""``scale eval``'s engine: one method on one data set, attempts run concurrently, a results row each.

A run is identified by its data set, method and the settings the method depends on; its rows go to
``OUT/<dataset>__<method>__<hash of settings>.jsonl``. Running the same command again reads that file and runs
only the attempts that are not in it yet, so an interrupted run resumes where it stopped.

Attempts per problem: ``samples`` independent attempts (Acc is pass@1 averaged over them), except for a method
that votes on its samples (``majority``), where ``samples`` is the number of votes inside one attempt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scale_graph import prompts
from scale_graph.api import run_config
from scale_graph.context import Context
from scale_graph.eval.datasets import Dataset, Problem
from scale_graph.eval.records import final_text, token_summary, units
from scale_graph.eval.results import ResultsWriter, Row, attempt_key, read_rows
from scale_graph.grading import GradingPool, grade
from scale_graph.graph.methods import Method
from scale_graph.models import EndpointError, served_model_name


@dataclass
class EvalRun:
    """One method on one data set with fixed settings."""

    dataset: Dataset
    method: Method
    context: Context
    """The run's Context with a live endpoint (the method's forced fields are applied on construction)."""
    out_dir: Path
    samples: int = 1
    limit: int | None = None
    concurrency: int = 1
    experiment: str | None = None
    """A name carried on every attempt's trace (LangSmith experiment / project), when tracing is on."""

    def __post_init__(self) -> None:
        if self.samples < 1 or self.concurrency < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("samples, concurrency and limit must be at least 1")
        ctx = self.method.context(self.context)
        if self.method.votes_on_samples:
            ctx = dataclasses.replace(ctx, samples=self.samples)
        if ctx.model is None and ctx.base_url:
            ctx = dataclasses.replace(ctx, model=served_model_name(ctx.base_url, ctx.api_key))
        self.context = ctx

    def settings(self) -> dict[str, Any]:
        """The Context fields the method depends on, the number of samples and the version of the prompts."""
        out = {name: getattr(self.context, name) for name in self.method.settings}
        return {**out, "samples": self.samples, "prompts": prompts.version()}

    @property
    def run_id(self) -> str:
        """``<dataset>__<method>__<8 hex digits of the settings>``."""
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dataset.name}__{self.method.name}__{digest}"

    @property
    def path(self) -> Path:
        """The results file."""
        return self.out_dir / f"{self.run_id}.jsonl"

    def attempts(self) -> list[tuple[Problem, int]]:
        """Every (problem, sample index) of the run, in data set order."""
        per_problem = 1 if self.method.votes_on_samples else self.samples
        problems = self.dataset.problems[: self.limit]
        return [(p, i) for p in problems for i in range(per_problem)]

    def pending(self) -> list[tuple[Problem, int]]:
        """The attempts with no row in the results file yet."""
        done = {attempt_key(r) for r in read_rows(self.path)}
        return [(p, i) for p, i in self.attempts() if (p.id, i) not in done]


def trace_config(run: EvalRun, problem: Problem, sample: int) -> dict[str, Any]:
    """The run config of one attempt: its trace is named after it and carries what identifies it."""
    metadata = {"eval_run": run.run_id, "dataset": run.dataset.name, "method": run.method.name,
                "problem_id": problem.id, "sample": sample, "gold": problem.answer, "experiment": run.experiment}
    return run_config(run_name=f"{run.method.name}:{problem.id}#{sample}", metadata=metadata,
                      tags=["eval", *([run.experiment] if run.experiment else [])])


def run_attempt(run: EvalRun, problem: Problem, sample: int, pool: GradingPool | None = None) -> Row:
    """Run one attempt through the method's graph, grade it and build its results row."""
    start = time.perf_counter()
    output = run.method.graph().invoke(
        {"problem": problem.problem, "problem_id": problem.id}, config=trace_config(run, problem, sample),
        context=run.context,
    )  # type: ignore[arg-type]
    wall = time.perf_counter() - start
    unit_records = units(run.method, output)
    verdict = grade(problem.answer, final_text(run.method, output, unit_records), run.dataset.kind, pool=pool)
    return {
        "run": run.run_id,
        "dataset": run.dataset.name,
        "problem_id": problem.id,
        "sample": sample,
        "method": run.method.name,
        "settings": run.settings(),
        "problem": problem.problem,
        "gold": problem.answer,
        "answer": output.get("answer"),
        "answer_fallback": output.get("answer_fallback"),
        "correct": verdict["correct"],
        "verdict": verdict,
        "tokens": token_summary(output, unit_records),
        "unit": run.method.unit,
        "units": unit_records,
        "subproblems": output.get("subproblems"),
        "wall_seconds": round(wall, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class EvalOutcome:
    """What a call of :func:`run_eval` did."""

    done: int = 0
    """Attempts finished and written now."""
    skipped: int = 0
    """Attempts already in the results file."""
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    """(problem id, sample, error) of attempts that raised; they are not written and run again next time."""
    stopped: str | None = None
    """Why the run stopped early (the endpoint failed), else None."""


def run_eval(
    run: EvalRun,
    *,
    on_row: Callable[[Row], None] | None = None,
    on_failure: Callable[[str, int, BaseException], None] | None = None,
    pool: GradingPool | None = None,
) -> EvalOutcome:
    """Run every pending attempt, up to ``run.concurrency`` at a time, appending each row as it finishes.

    An attempt that raises is reported and left for the next run; an :class:`EndpointError` (which the graphs
    raise only after their transport retries) stops the run, since every other attempt would fail the same
    way.
    """
    pending = run.pending()
    outcome = EvalOutcome(skipped=len(run.attempts()) - len(pending))
    todo: queue.Queue[tuple[Problem, int]] = queue.Queue()
    for item in pending:
        todo.put(item)
    finished: queue.Queue[tuple[Problem, int, Row | None, BaseException | None]] = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                problem, sample = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((problem, sample, run_attempt(run, problem, sample, pool), None))
            except Exception as exc:  # reported per attempt; the run goes on unless the endpoint failed
                if isinstance(exc, EndpointError):
                    stop.set()
                finished.put((problem, sample, None, exc))

    # Daemon threads: an interrupted run exits at once and loses only the attempts in flight.
    threads = [
        threading.Thread(target=work, daemon=True, name=f"eval-{i}")
        for i in range(min(run.concurrency, len(pending)))
    ]
    for thread in threads:
        thread.start()
    with ResultsWriter(run.path) as writer:
        while any(t.is_alive() for t in threads) or not finished.empty():
            try:
                problem, sample, row, exc = finished.get(timeout=0.2)
            except queue.Empty:
                continue
            if row is not None:
                writer.append(row)
                outcome.done += 1
                if on_row:
                    on_row(row)
                continue
            assert exc is not None
            outcome.failed.append((problem.id, sample, f"{type(exc).__name__}: {exc}"))
            if on_failure:
                on_failure(problem.id, sample, exc)
            if isinstance(exc, EndpointError) and outcome.stopped is None:
                outcome.stopped = str(exc)
    return outcome

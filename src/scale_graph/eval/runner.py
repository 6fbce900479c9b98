"""``scale eval``'s engine: one method on one data set, attempts run concurrently, a results row each.

A run is identified by its data set, method and the settings the method depends on; its rows go to
``OUT/<dataset>__<method>__<hash of settings>.jsonl``. Running the same command again reads that file and runs
only the attempts that are not in it yet, so an interrupted run resumes where it stopped.

Attempts per problem: ``samples`` independent attempts (Acc is pass@1 averaged over them), except for a method
that votes on its samples (``majority``), where ``samples`` is the number of votes inside one attempt.

When the endpoint rejects one attempt's request (HTTP 400/413/422, e.g. vLLM's "This model's maximum context
length is …"), that attempt gets an *error row* (``error`` set, ``correct`` false, no answer, zero tokens, verdict
status ``"error"``) and the run goes on; it counts as wrong and is not retried on resume. An endpoint that cannot
be reached, times out after its retries, or refuses every request (401, 404 …) stops the run instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig

from scale_graph import prompts
from scale_graph.api import run_config
from scale_graph.baselines.context import BaselineContext
from scale_graph.context import Context
from scale_graph.eval.datasets import Dataset, Problem
from scale_graph.eval.methods import Method
from scale_graph.eval.records import final_text, token_summary, units
from scale_graph.eval.results import ResultsWriter, Row, attempt_key, read_rows
from scale_graph.grading import GradingPool, grade
from scale_graph.models import EndpointError, served_model_name
from scale_graph.models.chat import aclose_chat_models


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
            # The voting method (majority) is a baseline: method.context gave it a BaselineContext.
            ctx = dataclasses.replace(cast(BaselineContext, ctx), samples=self.samples)
        if ctx.model is None and ctx.base_url:
            ctx = dataclasses.replace(ctx, model=served_model_name(ctx.base_url, ctx.api_key))
        self.context = ctx

    def settings(self) -> dict[str, Any]:
        """The Context fields the method depends on, the number of samples and the version of the prompts."""
        out = {name: getattr(self.context, name) for name in self.method.settings}
        out.update(self.method.optional_settings_of(self.context))
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


def trace_config(run: EvalRun, problem: Problem, sample: int) -> RunnableConfig:
    """The run config of one attempt: its trace is named after it and carries what identifies it."""
    metadata = {"eval_run": run.run_id, "dataset": run.dataset.name, "method": run.method.name,
                "problem_id": problem.id, "sample": sample, "gold": problem.answer, "experiment": run.experiment}
    return run_config(run_name=f"{run.method.name}:{problem.id}#{sample}", metadata=metadata,
                      tags=["eval", *([run.experiment] if run.experiment else [])])


REQUEST_REJECTED = frozenset({400, 413, 422})
"""HTTP statuses that reject one request for what it asks (too long a prompt, bad parameters), not the endpoint."""


def http_status(exc: EndpointError) -> int | None:
    """The HTTP status behind an endpoint error, if it was an HTTP reply at all."""
    for status in (getattr(exc, "status", None), getattr(exc.__cause__, "status_code", None)):
        if isinstance(status, int):
            return status
    match = re.match(r"HTTP (\d{3})\b", exc.reason)
    return int(match.group(1)) if match else None


def is_attempt_error(exc: BaseException) -> bool:
    """True when ``exc`` concerns this attempt only: the endpoint answered, but rejected this request.

    Such an error is not retryable and not a connection failure; another attempt (another prompt) may well go
    through, so the run records it and goes on.
    """
    return isinstance(exc, EndpointError) and not exc.retryable and http_status(exc) in REQUEST_REJECTED


def stops_run(exc: BaseException) -> bool:
    """True when ``exc`` means every other attempt would fail the same way (endpoint down, auth, wrong model)."""
    return isinstance(exc, EndpointError) and not is_attempt_error(exc)


def _row_head(run: EvalRun, problem: Problem, sample: int) -> Row:
    return {
        "run": run.run_id,
        "dataset": run.dataset.name,
        "problem_id": problem.id,
        "sample": sample,
        "method": run.method.name,
        "settings": run.settings(),
        "problem": problem.problem,
        "gold": problem.answer,
    }


def error_row(run: EvalRun, problem: Problem, sample: int, exc: BaseException, wall: float) -> Row:
    """The results row of an attempt the endpoint rejected: wrong, no answer, no units, zero tokens.

    The tokens of the calls that went through before the rejection are not known (the graph returned no
    output), so they are recorded as zero; metrics leave error rows out of the token averages.
    """
    return {
        **_row_head(run, problem, sample),
        "answer": None,
        "answer_fallback": None,
        "correct": False,
        "verdict": {"correct": False, "extracted": None, "status": "error", "seconds": 0.0},
        "error": f"{type(exc).__name__}: {exc}",
        "tokens": {"completion": 0, "prompt": 0, "by_stage": {},
                   "by_mode": {"system1": 0, "system2": 0, "control": 0}, "calls": 0},
        "unit": run.method.unit,
        "units": [],
        "subproblems": None,
        "wall_seconds": round(wall, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def arun_attempt(run: EvalRun, problem: Problem, sample: int, pool: GradingPool | None = None) -> Row:
    """Run one attempt through the method's graph, grade it and build its results row."""
    start = time.perf_counter()
    output = await run.method.graph().ainvoke(
        {"problem": problem.problem, "problem_id": problem.id}, config=trace_config(run, problem, sample),
        context=run.context,
    )
    wall = time.perf_counter() - start
    unit_records = units(run.method, output)
    # grading blocks on its worker pool (math-verify with a timeout): off the loop, so other attempts go on
    verdict = await asyncio.to_thread(grade, problem.answer, final_text(run.method, output, unit_records),
                                      run.dataset.kind, pool=pool)
    return {
        **_row_head(run, problem, sample),
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
    """Attempts finished and written now (error rows included)."""
    errored: int = 0
    """Of those, attempts the endpoint rejected, written as error rows (they count as wrong)."""
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

    The attempts are tasks on one event loop (the graphs' async API), so hundreds in flight cost no thread
    each. An attempt whose request the endpoint rejected (:func:`is_attempt_error`) is written as an error row
    and the run goes on. Any other :class:`EndpointError` (which the graphs raise only after their transport
    retries) stops the run, since every other attempt would fail the same way. Any other exception is reported
    through ``on_failure`` and the attempt is left for the next run. Interrupted (Ctrl-C), the run loses only
    the attempts in flight: every finished row is already written.
    """
    async def on_a_loop_of_its_own() -> EvalOutcome:
        try:
            return await arun_eval(run, on_row=on_row, on_failure=on_failure, pool=pool)
        finally:
            await aclose_chat_models()  # the loop ends here: close its HTTP connections first

    return asyncio.run(on_a_loop_of_its_own())


async def arun_eval(
    run: EvalRun,
    *,
    on_row: Callable[[Row], None] | None = None,
    on_failure: Callable[[str, int, BaseException], None] | None = None,
    pool: GradingPool | None = None,
) -> EvalOutcome:
    """:func:`run_eval` on the running event loop."""
    pending = run.pending()
    outcome = EvalOutcome(skipped=len(run.attempts()) - len(pending))
    todo = iter(pending)  # shared by the workers: each takes the next attempt when it is free

    def record(problem: Problem, sample: int, row: Row | None, exc: BaseException | None) -> None:
        if row is not None:
            writer.append(row)
            outcome.done += 1
            outcome.errored += bool(row.get("error"))
            if on_row:
                on_row(row)
            return
        assert exc is not None
        outcome.failed.append((problem.id, sample, f"{type(exc).__name__}: {exc}"))
        if on_failure:
            on_failure(problem.id, sample, exc)
        if stops_run(exc) and outcome.stopped is None:
            outcome.stopped = str(exc)

    async def work() -> None:
        for problem, sample in todo:
            if outcome.stopped is not None:
                return
            start = time.perf_counter()
            try:
                record(problem, sample, await arun_attempt(run, problem, sample, pool), None)
            except Exception as exc:  # reported per attempt; the run goes on unless the endpoint failed
                if is_attempt_error(exc):
                    record(problem, sample, error_row(run, problem, sample, exc, time.perf_counter() - start), None)
                else:
                    record(problem, sample, None, exc)

    with ResultsWriter(run.path) as writer:
        await asyncio.gather(*(work() for _ in range(min(run.concurrency, len(pending)))))
    return outcome

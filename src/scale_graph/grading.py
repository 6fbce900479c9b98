r"""Answer extraction and grading with math-verify, each check in a worker process with a wall-clock timeout.

Two questions are asked of a model's final text:

- :func:`grade`: is it right? The gold answer is parsed first and compared with ``verify(gold, prediction)``
  (the order math-verify expects). The prediction is the last ``\boxed{}``
  (:func:`~scale_graph.answers.extract_boxed`; in a nested box the inner one), parsed by math-verify's own LaTeX
  extraction; with no box, math-verify looks for the
  answer in the whole text. Units, ``^\circ``, thousands separators, leading zeros and equations such as
  ``x = 3`` are left to math-verify's LaTeX normalisation, so ``\frac{7}{2}`` is 7/2 (not 2) and
  ``1625\text{ cm}^2`` is 1625. The data set's *answer kind* decides the details: ``integer`` (AIME, AMC,
  GSM8K) parses with math-verify's LaTeX extraction (boxed first) plus its plain-expression extraction, after a
  small rewrite of the box for what math-verify reads wrongly (:func:`~scale_graph.answers.integer_box`:
  ``1\,000``, ``90°``, a final period); ``latex`` (MATH500) parses the box with the LaTeX extraction alone.
- :func:`equivalent`: are two answers the same mathematical object? (majority voting groups answers by this.)

Model output is never evaluated here: it is only handed to math-verify, and math-verify only ever runs in a
worker process. Its own timeout uses ``SIGALRM``, which works only on a process's main thread and cannot
interrupt a long C-level computation (``9^{9^{9^{9}}}`` hangs in big-integer arithmetic), so each check gets a
wall-clock timeout here instead: a worker that does not answer in time is killed and replaced, and the check
is marked ``timeout`` and counts as wrong. This module imports nothing of the graphs and imports math-verify
only in the workers.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal, TypedDict

from scale_graph.answers import extract_boxed, integer_box

AnswerKind = Literal["integer", "latex"]
"""How a data set's answers are graded: integers (``integer``) or any LaTeX expression (``latex``)."""

GradeStatus = Literal["ok", "no_answer", "timeout", "error"]
"""``ok``: graded; ``no_answer``: nothing could be extracted; ``timeout``: the check ran out of time (counted
wrong); ``error``: math-verify raised (counted wrong)."""

DEFAULT_TIMEOUT = 10.0
"""Seconds one check may take before its worker is killed."""

STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to start (importing math-verify is slow on a busy machine).

This is not counted toward a check's :data:`DEFAULT_TIMEOUT`."""

class Verdict(TypedDict):
    """The grade of one answer, stored with the attempt."""

    correct: bool
    """True when math-verify found the prediction equal to the gold answer."""
    extracted: str | None
    """The answer the grader extracted from the model's text (None when nothing was found)."""
    status: GradeStatus
    """How grading went; anything but ``ok`` counts as wrong."""
    seconds: float
    """Wall time of the check."""


# --- what runs inside a worker process ------------------------------------------------------------------


def _gold(answer: str) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return list(parse(f"${answer}$", [LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None))


def _prediction(response: str, kind: AnswerKind) -> list[Any]:
    """math-verify's parse of the model's answer, extracted as ``kind`` says (empty when nothing is found)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    boxed = extract_boxed(response)
    if kind == "integer":  # math-verify's recommended set: LaTeX (boxed first), then plain expressions
        config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
        text = f"\\boxed{{{integer_box(boxed)}}}" if boxed is not None else response
        return list(parse(text, config, parsing_timeout=None))
    if boxed is not None:
        return list(parse(f"\\boxed{{{boxed}}}", [LatexExtractionConfig(boxed_match_priority=0)], parsing_timeout=None))
    return list(parse(response, parsing_timeout=None))


def _grade_task(gold: str, response: str, kind: AnswerKind) -> tuple[bool, str | None]:
    from math_verify import verify

    predicted = _prediction(response, kind)
    extracted = str(predicted[-1]) if predicted else None
    if not predicted:
        return False, None
    return bool(verify(_gold(gold), predicted, timeout_seconds=None)), extracted


def _equivalent_task(first: str, second: str) -> bool:
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    a = parse(f"\\boxed{{{first}}}", config, parsing_timeout=None)
    b = parse(f"\\boxed{{{second}}}", config, parsing_timeout=None)
    if not a or not b:  # not mathematics math-verify can read: compare the text
        return _normal(first) == _normal(second)
    return bool(verify(a, b, timeout_seconds=None))


def _normal(answer: str) -> str:
    return re.sub(r"\s+", "", answer)


def _ping_task() -> bool:
    import math_verify  # noqa: F401 - the slow import happens before the first timed check

    return True


_TASKS: dict[str, Callable[..., Any]] = {
    "grade": _grade_task,
    "equivalent": _equivalent_task,
    "ping": _ping_task,
}


def _serve(conn: Connection) -> None:
    """A worker's loop: run each ``(task, args)`` it receives and send back ``(ok, value)``; stop on None."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that we disabled its own timeout
    while True:
        request = conn.recv()
        if request is None:
            return
        task, args = request
        try:
            conn.send((True, _TASKS[task](*args)))
        except Exception as exc:  # reported to the caller, who marks the item as an error
            conn.send((False, f"{type(exc).__name__}: {exc}"[:300]))


# --- the pool, on the caller's side ---------------------------------------------------------------------


class GradingTimeout(Exception):
    """A check did not finish within the wall-clock timeout (its worker was killed)."""


class GradingError(Exception):
    """math-verify raised inside the worker; the message is its error."""


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, mp: Any) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(child,), daemon=True, name="scale-grader")
        self.process.start()
        child.close()
        try:
            self.call("ping", (), STARTUP_TIMEOUT)
        except GradingTimeout:
            self.close(kill=True)
            raise GradingError(f"a grading worker did not start within {STARTUP_TIMEOUT:g} s") from None

    def call(self, task: str, args: tuple[Any, ...], timeout: float) -> Any:
        self.conn.send((task, args))
        if not self.conn.poll(timeout):
            raise GradingTimeout(f"{task} took longer than {timeout:g} s")
        ok, value = self.conn.recv()
        if not ok:
            raise GradingError(value)
        return value

    def close(self, *, kill: bool = False) -> None:
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
                self.process.join(2.0)
            except (OSError, ValueError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)
        self.conn.close()


class GradingPool:
    """Up to ``size`` math-verify worker processes, shared by threads; each call has a wall-clock timeout.

    A worker is started on first need and reused; one that times out or dies is killed and a fresh one takes
    its place on the next call.
    """

    def __init__(self, size: int = 2, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self._mp = multiprocessing.get_context(method)
        if method == "forkserver":  # workers fork from a server that has math-verify imported already
            self._mp.set_forkserver_preload(["scale_graph.grading", "math_verify"])

    def call(self, task: str, *args: Any) -> Any:
        """Run ``task`` in a worker; :class:`GradingTimeout` / :class:`GradingError` when it fails."""
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            worker = worker or _Worker(self._mp)
            try:
                value = worker.call(task, args, self.timeout)
            except (GradingTimeout, EOFError, OSError) as exc:
                worker.close(kill=True)
                if isinstance(exc, GradingTimeout):
                    raise
                raise GradingError(f"the grading worker died ({type(exc).__name__})") from exc
            with self._lock:
                self._idle.append(worker)
            return value

    def close(self) -> None:
        """Stop every idle worker (idempotent)."""
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.close()

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: GradingPool | None = None
_default_lock = threading.Lock()


def default_pool() -> GradingPool:
    """The process-wide pool (2 workers, :data:`DEFAULT_TIMEOUT`), started on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = GradingPool()
            atexit.register(_default.close)
        return _default


def grade(gold: str, response: str | None, kind: AnswerKind, *, pool: GradingPool | None = None) -> Verdict:
    """Grade the model's final text against the gold answer (parsed first); never raises on bad output."""
    start = time.perf_counter()
    status: GradeStatus = "ok"
    correct, extracted = False, None
    try:
        correct, extracted = (pool or default_pool()).call("grade", gold, response or "", kind)
        if extracted is None:
            status = "no_answer"
    except GradingTimeout:
        status = "timeout"
    except GradingError:
        status = "error"
    return Verdict(
        correct=correct, extracted=extracted, status=status, seconds=round(time.perf_counter() - start, 3)
    )


def equivalent(first: str, second: str, *, pool: GradingPool | None = None) -> bool:
    """True when math-verify finds the two answers equal; a timeout or error counts as different."""
    if _normal(first) == _normal(second):
        return True
    try:
        return bool((pool or default_pool()).call("equivalent", first, second))
    except (GradingTimeout, GradingError):
        return False


@dataclass
class AnswerGroup:
    """Answers found equivalent: the first one seen stands for the group."""

    answer: str
    """The representative (the earliest sample's answer)."""
    members: list[int]
    """Indices of the samples in the group, in order."""


def group_answers(
    answers: Sequence[str | None], same: Callable[[str, str], bool] = equivalent
) -> list[AnswerGroup]:
    """Group answers by ``same``, comparing each with every group's representative; None answers are skipped.

    Groups come out in order of their earliest member.
    """
    groups: list[AnswerGroup] = []
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        group = next((g for g in groups if same(g.answer, answer)), None)
        if group is None:
            groups.append(AnswerGroup(answer=answer, members=[index]))
        else:
            group.members.append(index)
    return groups


def majority(groups: Sequence[AnswerGroup]) -> AnswerGroup | None:
    """The largest group; a tie goes to the group whose earliest member came first (deterministic)."""
    return min(groups, key=lambda g: (-len(g.members), g.members[0]), default=None)

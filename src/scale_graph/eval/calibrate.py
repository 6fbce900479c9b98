"""``scale calibrate``: does the difficulty d mean anything? System 1 against System 2 on an eval run's sub-problems.

For every sub-problem of the SCALE attempts in a results directory (rows of ``scale eval``: each unit is a solved
sub-problem with its d, its mode and its solution), both modes are asked the sub-problem with the *same* Eq. 5
context, the one the run had: P and every earlier sub-problem with the solution the run recorded
(:func:`~scale_graph.nodes.solve.solve_messages`, so each request is exactly what the run would have sent in that
mode). The mode the run itself used is not asked again: its recorded solution is reused, unless the endpoint serves
another model than the run's or ``fresh`` is set. The two answers (the last ``\\boxed{}`` of each) are judged by
math-verify equivalence in :mod:`scale_graph.grading`'s worker pool, and the item is written as one row of
``calibration.jsonl``: d, both answers, both token costs, whether they agree.

A calibrated assessor puts the disagreements at high d. :func:`summarize` reports, per assessed run and per d
bucket, the disagreement rate and the mean completion tokens of each mode, and the AUROC of d as a predictor of
disagreement (0.5: d says nothing; 1: every disagreement scored above every agreement). :func:`write_report` writes
``calibration.md`` (with a text reliability diagram) and, with matplotlib installed, ``calibration.png``.

Rows are appended as items finish (one durable line each, :class:`~scale_graph.eval.results.ResultsWriter`), and an
item already in the file is not asked again, so an interrupted command resumes where it stopped. The report files
are written whole or not at all (:mod:`scale_graph.eval.files`).

Which d is judged: the d the route used, except on a forced final step (``final_step="question"``: d = 0.9 by rule)
where it is the assessor's own score when the run recorded one, and none otherwise (the item is then solved and
written, but left out of the statistics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any, cast

from scale_graph.answers import extract_boxed
from scale_graph.context import Context
from scale_graph.eval.files import write_text_atomic
from scale_graph.eval.results import ResultsWriter, Row, read_dirs, read_rows
from scale_graph.eval.runner import stops_run
from scale_graph.grading import GradingPool, equivalent
from scale_graph.models import Profiles, acall_model, resolve_profiles
from scale_graph.models.chat import aclose_chat_models
from scale_graph.nodes.solve import solve_messages
from scale_graph.state import Mode, StepResult

CALIBRATION_FILE = "calibration.jsonl"
REPORT_FILE = "calibration.md"
PLOT_FILE = "calibration.png"
OUT_SUBDIR = "calibration"
"""The default output folder, inside the results directory: ``scale report`` reads every ``*.jsonl`` file *in* a
results directory as results rows, so the calibration rows live one level down."""

DEFAULT_BUCKETS = 5

RUN_SETTINGS = ("preset", "temperature", "top_p", "top_k", "system1_max_tokens", "system2_max_tokens")
"""Settings taken from the run being calibrated (its sampling and budgets), unless given explicitly: the modes are
asked as that run asked them. The endpoint and model are the calibrating command's own."""

MODES: tuple[Mode, Mode] = ("system1", "system2")
SCALE_UNIT = "sub-problem"


# --- the items: one per solved sub-problem of a SCALE attempt -------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One sub-problem of one attempt, with what its Eq. 5 context is made of."""

    row: Row
    """The attempt's results row."""
    position: int
    """Where the sub-problem's unit is in ``row["units"]`` (the earlier units are its context)."""

    @property
    def unit(self) -> dict[str, Any]:
        """The sub-problem's unit record (its d, mode, solution and tokens as the run recorded them)."""
        return cast(dict[str, Any], self.row["units"][self.position])

    def key(self, model: str) -> tuple[str, str, int, int, str]:
        """What identifies the item's calibration row: the attempt, the sub-problem and the calibrating model."""
        row = self.row
        return str(row["run"]), str(row["problem_id"]), int(row["sample"]), int(self.unit["index"]), model

    def forced(self) -> bool:
        """True when the run's d was forced by rule (the final question under ``final_step="question"``).

        Rows made before units recorded ``forced`` are recognised by the rule itself.
        """
        if "forced" in self.unit:
            return bool(self.unit["forced"])
        last = self.unit["index"] == len(self.row.get("subproblems") or []) - 1
        return bool(last and self.row.get("settings", {}).get("final_step", "question") == "question")

    def judged_difficulty(self) -> float | None:
        """The d to judge: the route's, or on a forced step the assessor's own score (None when unknown)."""
        if not self.forced():
            return float(self.unit["difficulty"])
        assessed = self.unit.get("assessed_difficulty")
        return float(assessed) if isinstance(assessed, int | float) else None

    def earlier_steps(self) -> list[StepResult]:
        """The run's earlier sub-problems with their solutions and modes, as the Eq. 5 context takes them."""
        return [cast(StepResult, {"index": u["index"], "subproblem": u["text"], "mode": u["mode"],
                                  "solution": u["solution"]})
                for u in self.row["units"][: self.position]]


def is_calibratable(row: Row) -> bool:
    """True for an attempt of the SCALE family that ran (not an error row) and solved at least one sub-problem."""
    return (row.get("unit") == SCALE_UNIT and not row.get("error") and bool(row.get("units"))
            and isinstance(row.get("subproblems"), list) and "run" in row)


def items_of(rows: Iterable[Row]) -> list[Item]:
    """Every solved sub-problem of the calibratable attempts, in results order."""
    return [Item(row, k) for row in rows if is_calibratable(row) for k in range(len(row["units"]))]


def calibration_key(row: Row) -> tuple[str, str, int, int, str]:
    """The key of a calibration row (as :meth:`Item.key`)."""
    return str(row["run"]), str(row["problem_id"]), int(row["sample"]), int(row["index"]), str(row["model"])


# --- asking both modes ------------------------------------------------------------------------------------------------


def run_context(base: Context, settings: dict[str, Any], explicit: Iterable[str] = ()) -> Context:
    """``base`` (a live endpoint) with the run's sampling and budget settings, except those set ``explicit``\\ ly."""
    keep = set(explicit)
    taken = {k: settings[k] for k in RUN_SETTINGS if k in settings and k not in keep and settings[k] is not None}
    return dataclasses.replace(base, **taken) if taken else base


@dataclass
class Answer:
    """One mode's answer to an item."""

    answer: str | None
    completion_tokens: int
    finish_reason: str | None
    reused: bool
    """True when this is the run's own recorded solution (that mode was not asked again)."""

    def record(self) -> dict[str, Any]:
        """As written in the calibration row."""
        return dataclasses.asdict(self)


def judge(first: str | None, second: str | None, pool: GradingPool | None = None) -> bool | None:
    """Whether two answers agree (math-verify equivalence); None when neither mode gave one."""
    if first is None and second is None:
        return None
    if first is None or second is None:
        return False
    return equivalent(first, second, pool=pool)


@dataclass
class Calibration:
    """One calibration of a results directory against a live endpoint."""

    results_dir: Path
    out_dir: Path
    context: Context
    """The calibrating endpoint (live) and model; the run's own sampling and budgets are applied per run."""
    explicit: frozenset[str] = frozenset()
    """Fields of :data:`RUN_SETTINGS` the user set: they win over the run's."""
    limit: int | None = None
    """Only the first this-many sub-problems (in results order)."""
    concurrency: int = 2
    fresh: bool = False
    """Ask both modes even where the run recorded one."""

    def __post_init__(self) -> None:
        if self.concurrency < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("concurrency and limit must be at least 1")
        if not self.results_dir.is_dir():
            raise ValueError(f"{self.results_dir} is not a directory of results")
        if self.out_dir.resolve() == self.results_dir.resolve():
            raise ValueError(f"--out must not be the results directory itself ({self.results_dir}): `scale report` "
                             f"would read {CALIBRATION_FILE} as results; the default is {OUT_SUBDIR}/ inside it")
        if not self.context.base_url or not self.context.model:
            raise ValueError("the calibrating context needs a live endpoint and a model name")

    @property
    def model(self) -> str:
        """The calibrating model's name."""
        return str(self.context.model)

    @property
    def path(self) -> Path:
        """The calibration rows file."""
        return self.out_dir / CALIBRATION_FILE

    def items(self) -> list[Item]:
        """The sub-problems to calibrate (``limit`` applied): those with a d to judge.

        A forced final question whose run recorded no score of the assessor's own (runs from before units kept
        ``assessed_difficulty``, or the agreement assessor, which does not sample it) has nothing to judge: asking
        its other mode would cost model time and add nothing to the statistics.
        """
        judged = [item for item in items_of(read_dirs([self.results_dir])) if item.judged_difficulty() is not None]
        return judged[: self.limit]

    def pending(self) -> list[Item]:
        """The items with no row for this model yet."""
        done = {calibration_key(r) for r in read_rows(self.path)}
        return [item for item in self.items() if item.key(self.model) not in done]


@dataclass
class CalibrationOutcome:
    """What a call of :func:`run_calibration` did."""

    done: int = 0
    skipped: int = 0
    failed: list[tuple[tuple[str, str, int, int, str], str]] = field(default_factory=list)
    """(item key, error) of items that raised; they are not written and run again next time."""
    stopped: str | None = None
    """Why the calibration stopped early (the endpoint failed), else None."""


class _Profiles:
    """The profiles of each distinct run setting, resolved once (resolving may ask the endpoint for /models)."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self._cache: dict[str, Profiles] = {}
        self._lock = asyncio.Lock()

    async def of(self, settings: dict[str, Any]) -> Profiles:
        ctx = run_context(self.calibration.context, settings, self.calibration.explicit)
        key = repr([getattr(ctx, name) for name in RUN_SETTINGS])
        async with self._lock:
            if key not in self._cache:
                self._cache[key] = await asyncio.to_thread(resolve_profiles, ctx)
            return self._cache[key]


async def ask(item: Item, mode: Mode, profiles: Profiles) -> Answer:
    """Ask ``mode`` the item's sub-problem with the run's Eq. 5 context."""
    row = item.row
    messages = solve_messages(profiles, row["problem"], list(row["subproblems"]), item.earlier_steps(), mode)
    reply = await acall_model(profiles.for_mode(mode), messages, run_name=f"calibrate_{mode}", tags=["calibrate"],
                              metadata={"problem_id": row["problem_id"], "subproblem": item.unit["index"],
                                        "eval_run": row["run"]})
    return Answer(extract_boxed(reply.content), reply.completion_tokens, reply.finish_reason, reused=False)


def recorded(item: Item) -> Answer:
    """The run's own answer in the mode it used."""
    unit = item.unit
    return Answer(extract_boxed(unit["solution"]), int(unit["completion_tokens"]), unit.get("finish_reason"),
                  reused=True)


async def calibrate_item(item: Item, calibration: Calibration, profiles: _Profiles,
                         pool: GradingPool | None = None) -> Row:
    """Both modes' answers to one item (the run's own where it may be reused), judged, as a calibration row."""
    row, unit = item.row, item.unit
    reuse = not calibration.fresh and row.get("settings", {}).get("model") == calibration.model
    resolved = await profiles.of(row.get("settings") or {})

    async def answer(mode: Mode) -> Answer:
        return recorded(item) if reuse and unit["mode"] == mode else await ask(item, mode, resolved)

    fast, deep = await asyncio.gather(answer("system1"), answer("system2"))
    agree = await asyncio.to_thread(judge, fast.answer, deep.answer, pool)
    return {
        "run": row["run"], "dataset": row.get("dataset"), "method": row.get("method"),
        "assess": (row.get("settings") or {}).get("assess", "upfront"),
        "problem_id": row["problem_id"], "sample": row["sample"], "index": unit["index"],
        "subproblem": unit["text"], "route_mode": unit["mode"],
        "difficulty": unit["difficulty"], "assessed_difficulty": unit.get("assessed_difficulty"),
        "forced": item.forced(), "d": item.judged_difficulty(),
        "model": calibration.model,
        "system1": fast.record(), "system2": deep.record(),
        "agree": agree,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def arun_calibration(calibration: Calibration, *, on_row: Callable[[Row], None] | None = None,
                           on_failure: Callable[[Item, BaseException], None] | None = None,
                           pool: GradingPool | None = None) -> CalibrationOutcome:
    """Calibrate every pending item, ``concurrency`` at a time, appending each row as it finishes.

    An :class:`~scale_graph.models.EndpointError` that means every other item would fail too (endpoint down, auth,
    unknown model) stops the calibration; any other failure is reported through ``on_failure`` and the item is left
    for the next run.
    """
    pending = calibration.pending()
    outcome = CalibrationOutcome(skipped=len(calibration.items()) - len(pending))
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in pending:
        queue.put_nowait(item)
    profiles = _Profiles(calibration)

    async def work(writer: ResultsWriter) -> None:
        while outcome.stopped is None:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                row = await calibrate_item(item, calibration, profiles, pool)
            except Exception as exc:  # reported per item; the calibration goes on unless the endpoint failed
                outcome.failed.append((item.key(calibration.model), f"{type(exc).__name__}: {exc}"))
                if stops_run(exc) and outcome.stopped is None:
                    outcome.stopped = str(exc)
                if on_failure:
                    on_failure(item, exc)
                continue
            writer.append(row)
            outcome.done += 1
            if on_row:
                on_row(row)

    try:
        with ResultsWriter(calibration.path) as writer:
            await asyncio.gather(*(work(writer) for _ in range(min(calibration.concurrency, len(pending)))))
    finally:
        await aclose_chat_models()
    return outcome


def run_calibration(calibration: Calibration, **kwargs: Any) -> CalibrationOutcome:
    """:func:`arun_calibration` on an event loop of its own (from sync code: the CLI)."""
    return asyncio.run(arun_calibration(calibration, **kwargs))


# --- the statistics ---------------------------------------------------------------------------------------------------


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """The area under the ROC curve of ``scores`` predicting ``positives`` (ties count half); None with one class.

    Equal to the probability that a random positive scores above a random negative (Mann-Whitney U / n⁺n⁻).
    """
    pairs = sorted(zip(scores, positives, strict=True), key=lambda p: p[0])
    n_pos = sum(positives)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum, start = 0.0, 0
    while start < len(pairs):  # midranks over each run of tied scores
        end = start
        while end + 1 < len(pairs) and pairs[end + 1][0] == pairs[start][0]:
            end += 1
        midrank = (start + end) / 2 + 1
        rank_sum += midrank * sum(p for _, p in pairs[start : end + 1])
        start = end + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bucket_of(d: float, buckets: int) -> int:
    """The bucket of d among ``buckets`` equal ones over [0, 1], closed on the right (Eq. 4: d ≤ τ is System 1).

    With 5 buckets: [0, 0.2], (0.2, 0.4], …, (0.8, 1].
    """
    return min(buckets - 1, max(0, math.ceil(round(d * buckets, 9)) - 1))


def bucket_label(k: int, buckets: int) -> str:
    """``[0, 0.2]`` for the first bucket, ``(0.2, 0.4]`` after."""
    lo, hi = k / buckets, (k + 1) / buckets
    return f"[{lo:g}, {hi:g}]" if k == 0 else f"({lo:g}, {hi:g}]"


@dataclass
class Bucket:
    """The judged items whose d falls in one bucket."""

    label: str
    n: int
    disagreements: int
    mean_d: float | None
    system1_tokens: float | None
    system2_tokens: float | None

    @property
    def rate(self) -> float | None:
        """Share of the bucket's items where System 1 and System 2 disagree."""
        return self.disagreements / self.n if self.n else None


@dataclass
class RunCalibration:
    """The calibration of one assessed run (one results file) against one model."""

    run: str
    method: str
    assess: str
    model: str
    items: int
    """Rows written for this run (judged or not)."""
    judged: int
    """Rows with a d and a verdict (both counted in the statistics)."""
    disagreements: int
    auroc: float | None
    extreme_share: float | None
    """Share of judged items whose d is exactly 0 or 1."""
    system1_tokens: float | None
    """Mean completion tokens of a System 1 answer over all rows (the cost budget routing expects)."""
    system2_tokens: float | None
    buckets: list[Bucket]

    @property
    def rate(self) -> float | None:
        """Overall disagreement rate of the judged items."""
        return self.disagreements / self.judged if self.judged else None


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return fmean(values) if values else None


def summarize(rows: Iterable[Row], buckets: int = DEFAULT_BUCKETS) -> list[RunCalibration]:
    """One :class:`RunCalibration` per (run, model) of the calibration rows, in name order."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    grouped: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        grouped[(str(row["run"]), str(row["model"]))].append(row)
    out = []
    for (run, model), group in sorted(grouped.items()):
        judged = [r for r in group if r.get("d") is not None and r.get("agree") is not None]
        by_bucket: dict[int, list[Row]] = defaultdict(list)
        for r in judged:
            by_bucket[bucket_of(float(r["d"]), buckets)].append(r)
        table = [
            Bucket(label=bucket_label(k, buckets), n=len(members),
                   disagreements=sum(not r["agree"] for r in members),
                   mean_d=_mean(float(r["d"]) for r in members),
                   system1_tokens=_mean(r["system1"]["completion_tokens"] for r in members),
                   system2_tokens=_mean(r["system2"]["completion_tokens"] for r in members))
            for k in range(buckets) for members in [by_bucket.get(k, [])]
        ]
        out.append(RunCalibration(
            run=run, method=str(group[0].get("method")), assess=str(group[0].get("assess")), model=model,
            items=len(group), judged=len(judged), disagreements=sum(not r["agree"] for r in judged),
            auroc=auroc([float(r["d"]) for r in judged], [not r["agree"] for r in judged]),
            extreme_share=(sum(float(r["d"]) in (0.0, 1.0) for r in judged) / len(judged)) if judged else None,
            system1_tokens=_mean(r["system1"]["completion_tokens"] for r in group),
            system2_tokens=_mean(r["system2"]["completion_tokens"] for r in group),
            buckets=table,
        ))
    return out


def token_costs(path: Path) -> dict[str, float]:
    """Budget routing's per-mode costs (``system1_token_cost``, ``system2_token_cost``) from calibration rows.

    ``path``: a ``calibration.jsonl`` file, a folder holding one, or a results directory whose ``calibration/``
    folder holds one. The costs are the mean completion tokens of each mode's answers over every row.
    ``ValueError`` when there is no such file or it has no rows.
    """
    candidates = [path, path / CALIBRATION_FILE, path / OUT_SUBDIR / CALIBRATION_FILE]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ValueError(f"no {CALIBRATION_FILE} at {path} (make one with `scale calibrate RESULTS_DIR`)")
    rows = read_rows(found)
    if not rows:
        raise ValueError(f"{found} has no calibration rows")
    try:
        costs = {f"{mode}_token_cost": fmean(float(r[mode]["completion_tokens"]) for r in rows) for mode in MODES}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{found} is not a calibration file ({type(exc).__name__}: {exc})") from None
    return {name: max(1.0, round(value, 1)) for name, value in costs.items()}


# --- the report -------------------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _bar(rate: float | None, width: int = 20) -> str:
    if rate is None:
        return " " * width
    filled = round(rate * width)
    return "█" * filled + "·" * (width - filled)


def markdown(runs: Sequence[RunCalibration], source: Path | None = None) -> str:
    """``calibration.md``: per run, the bucket table, the AUROC, the costs, and a text reliability diagram."""
    lines = ["# Calibration: does d predict where System 1 and System 2 disagree?", ""]
    if source is not None:
        lines += [f"Results: `{source}`.", ""]
    lines += [
        "Each sub-problem of the run's attempts was answered by both modes with the run's own Eq. 5 context; "
        "*disagree* means their boxed answers are not equivalent (math-verify). A calibrated assessor puts the "
        "disagreements at high d: the rate rises across the buckets and the AUROC of d is well above 0.5. "
        "Tokens are mean completion tokens per answer.",
        "",
    ]
    if not runs:
        return "\n".join([*lines, "No calibration rows yet.", ""])
    lines += ["| run | assess | model | sub-problems | judged | disagree % | AUROC | d ∈ {0, 1} % | S1 tok | S2 tok |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.run} | {r.assess} | {r.model} | {r.items} | {r.judged} | "
                     f"{_num(None if r.rate is None else 100 * r.rate, '.0f')} | {_num(r.auroc, '.3f')} | "
                     f"{_num(None if r.extreme_share is None else 100 * r.extreme_share, '.0f')} | "
                     f"{_num(r.system1_tokens, '.0f')} | {_num(r.system2_tokens, '.0f')} |")
    for r in runs:
        lines += ["", f"## {r.run} (assess={r.assess}, {r.model})", "",
                  "| d bucket | n | disagree | rate % | mean d | S1 tok | S2 tok |", "|---|---|---|---|---|---|---|"]
        for b in r.buckets:
            lines.append(f"| {b.label} | {b.n} | {b.disagreements} | "
                         f"{_num(None if b.rate is None else 100 * b.rate, '.0f')} | {_num(b.mean_d, '.2f')} | "
                         f"{_num(b.system1_tokens, '.0f')} | {_num(b.system2_tokens, '.0f')} |")
        lines += ["", "Reliability (disagreement rate per bucket; a calibrated d rises with the diagonal):", "",
                  "```text"]
        lines += [f"{b.label:>11} {_bar(b.rate)} {_num(None if b.rate is None else 100 * b.rate, '3.0f'):>3}%"
                  f" (n={b.n})" for b in r.buckets]
        lines += ["```"]
        if r.system1_tokens is not None and r.system2_tokens is not None:
            lines += ["", "Route under a token budget with these costs: `--system1-token-cost "
                      f"{r.system1_tokens:.0f} --system2-token-cost {r.system2_tokens:.0f}` (or `--token-costs` "
                      "with this file's folder)."]
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[RunCalibration], path: Path) -> Path | None:
    """``calibration.png``: the reliability diagram (rate per bucket against mean d) and the histogram of d.

    None when there is nothing judged, or matplotlib (the ``eval`` extra) is not installed.
    """
    judged = [r for r in runs if r.judged]
    if not judged:
        return None
    try:
        from scale_graph.eval.report import save_figure, use_agg  # noqa: PLC0415 - pulls in the optional plotting

        use_agg()
        import matplotlib.pyplot as plt  # noqa: PLC0415 - the eval extra, only where a plot is made
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="d = disagreement rate")
    width = 0.8 / len(judged)
    for k, r in enumerate(judged):
        points = [(b.mean_d, b.rate, b.n) for b in r.buckets if b.n and b.mean_d is not None and b.rate is not None]
        label = f"{r.assess} · {r.run} (AUROC {_num(r.auroc, '.2f')})"
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        for x, y, n in points:
            left.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        right.bar([i + k * width for i in range(len(r.buckets))], [b.n for b in r.buckets], width=width,
                  label=f"{r.assess} · {r.run}")
    left.set(title="reliability: System 1 vs System 2 disagreement by d", xlabel="mean d in bucket",
             ylabel="disagreement rate", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="upper left")
    buckets = judged[0].buckets
    right.set_xticks([i + 0.4 - width / 2 for i in range(len(buckets))], [b.label for b in buckets], fontsize=8)
    right.set(title="sub-problems per d bucket", xlabel="d", ylabel="sub-problems")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=7)
    return save_figure(fig, path)


def write_report(rows: Iterable[Row], out_dir: Path, *, buckets: int = DEFAULT_BUCKETS,
                 source: Path | None = None) -> list[Path]:
    """``calibration.md`` and (matplotlib installed, something judged) ``calibration.png`` in ``out_dir``."""
    runs = summarize(rows, buckets)
    written = [write_text_atomic(out_dir / REPORT_FILE, markdown(runs, source))]
    figure = plot(runs, out_dir / PLOT_FILE)
    return written + ([figure] if figure is not None else [])


"""The paper's metrics over results rows, one :class:`RunMetrics` per run (data set × method × settings).

- **Acc**: pass@1 averaged over the n samples: each problem scores the share of its attempts that were
  correct, and Acc is the mean over problems. (For ``majority`` each attempt is one vote over n samples.)
- **Tok**: completion tokens per attempt over all stages (decompose, select, assess, solve, summarize), also
  split by stage and by mode.
- **solve Tok**: completion tokens per attempt of the method's own work only, without the scaffolding calls
  (decompose, select, assess): the System 1 and System 2 units; for inftythink the rounds and their summaries.
  It equals Tpi × units per attempt. The paper's Tok can be compared with either.
- **Tpi**: completion tokens per unit: per sub-problem solved (SCALE family), per sample (cot, majority) or
  per round including its summary (inftythink). It is the units' tokens divided by their number.
- **Hard%**: share of units run by System 2 (for SCALE: sub-problems routed to System 2).
- Also prompt tokens, model calls and wall time per attempt, and how many grades timed out.

An attempt the endpoint rejected (an error row, ``error`` set) counts as wrong in Acc and is counted in
``errors``; it is left out of the token, unit, call and time averages, since its tokens are not known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from scale_graph.context import Context
from scale_graph.eval.records import unit_tokens
from scale_graph.eval.results import Row

_DEFAULT_S2 = Context.system2_max_tokens


@dataclass
class RunMetrics:
    """The metrics of one run."""

    run: str
    dataset: str
    method: str
    settings: dict[str, Any]
    problems: int
    attempts: int
    acc: float
    """Pass@1 averaged over samples, in [0, 1]."""
    tok: float
    """Completion tokens per attempt."""
    solve_tok: float
    """Completion tokens per attempt of the solving units only (no decompose/select/assess)."""
    tok_by_stage: dict[str, float]
    tok_by_mode: dict[str, float]
    tpi: float
    """Completion tokens per unit (sub-problem, sample or round)."""
    hard: float
    """Share of units on System 2, in [0, 1]."""
    units: float
    """Units per attempt."""
    prompt_tokens: float
    calls: float
    seconds: float
    """Wall time per attempt."""
    grade_status: dict[str, int] = field(default_factory=dict)
    """How many grades ended ok / no_answer / timeout / error."""
    errors: int = 0
    """Attempts the endpoint rejected (error rows; counted wrong)."""

    @property
    def label(self) -> str:
        """A short name for tables and plots: the method and the setting that distinguishes it."""
        s = self.settings
        name = self.method
        if self.method == "scale":
            name = f"scale budget={s['token_budget']}" if s.get("token_budget") else f"scale τ={s['threshold']:g}"
        elif self.method == "majority":
            name = f"majority n={s['samples']}"
        elif self.method == "inftythink":
            name = f"inftythink {s['rounds']}×{s['round_max_tokens']}"
        if s.get("assess") == "agreement":
            name += " agreement"
        budget = s.get("system2_max_tokens")
        return name if budget in (None, _DEFAULT_S2) else f"{name} S2={budget}"


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return fmean(values) if values else 0.0


def compute(rows: list[Row]) -> RunMetrics:
    """The metrics of one run's rows (all with the same ``run``)."""
    if not rows:
        raise ValueError("no rows to compute metrics from")
    by_problem: dict[str, list[bool]] = defaultdict(list)
    status: dict[str, int] = defaultdict(int)
    for row in rows:
        by_problem[row["problem_id"]].append(bool(row["correct"]))
        status[row["verdict"]["status"]] += 1
    ran = [r for r in rows if not r.get("error")]  # the token averages are over attempts that ran
    all_units = [u for row in ran for u in row["units"]]
    stages = sorted({stage for row in ran for stage in row["tokens"]["by_stage"]})
    first = rows[0]
    return RunMetrics(
        run=first["run"],
        dataset=first["dataset"],
        method=first["method"],
        settings=first["settings"],
        problems=len(by_problem),
        attempts=len(rows),
        acc=_mean(_mean(v) for v in by_problem.values()),
        tok=_mean(r["tokens"]["completion"] for r in ran),
        solve_tok=_mean(sum(unit_tokens(u) for u in r["units"]) for r in ran),
        tok_by_stage={s: _mean(r["tokens"]["by_stage"].get(s, 0) for r in ran) for s in stages},
        tok_by_mode={
            m: _mean(r["tokens"]["by_mode"].get(m, 0) for r in ran)
            for m in ("system1", "system2", "control")
        },
        tpi=sum(unit_tokens(u) for u in all_units) / len(all_units) if all_units else 0.0,
        hard=sum(u["mode"] == "system2" for u in all_units) / len(all_units) if all_units else 0.0,
        units=len(all_units) / len(ran) if ran else 0.0,
        prompt_tokens=_mean(r["tokens"]["prompt"] for r in ran),
        calls=_mean(r["tokens"]["calls"] for r in ran),
        seconds=_mean(r["wall_seconds"] for r in ran),
        grade_status=dict(status),
        errors=len(rows) - len(ran),
    )


def compute_all(rows: Iterable[Row]) -> list[RunMetrics]:
    """The metrics of every run in ``rows``, sorted by data set, method and label."""
    runs: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        runs[row["run"]].append(row)
    return sorted((compute(r) for r in runs.values()), key=lambda m: (m.dataset, m.method, m.label))

"""Reports over results: the method × data set table (terminal and Markdown) and PNG plots.

Plots (matplotlib, written only when there is something to show):

- ``accuracy_vs_tokens.png``: one point per run (Acc against Tok), one panel per data set.
- ``tau_sweep.png``: SCALE's Acc, Tok and Hard% against τ, a line per data set (and System 2 budget).
- ``budget_sweep.png``: Acc and Tok against the System 2 budget (System 1's fixed), a line per method.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scale_graph.eval.files import atomic_path, write_text_atomic
from scale_graph.eval.metrics import RunMetrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCALE_FAMILY = ("scale", "all-fast", "all-deep")

COLUMNS = ("dataset", "method", "n", "Acc %", "Tok", "solve Tok", "Tpi", "Hard %", "errors", "prompt tok", "calls",
           "s/attempt")
"""The table's columns: n is problems × attempts; Tok, solve Tok, prompt tok, calls and seconds are per attempt;
errors counts the attempts the endpoint rejected (counted wrong)."""

LEGEND = (
    "Acc = pass@1 averaged over samples (an attempt the endpoint rejected counts as wrong); Tok = completion "
    "tokens per attempt over all stages; solve Tok = the same without the scaffolding calls (decompose, select, "
    "assess): System 1 and System 2 units, InftyThink's rounds with their summaries; Tpi = completion tokens per "
    "unit (sub-problem, sample, or round with its summary); Hard % = share of units on System 2 (SCALE: "
    "sub-problems, the forced final System 2 step included). n = problems × attempts per problem; errors = "
    "attempts the endpoint rejected (left out of the token averages)."
)


def table_rows(metrics: Sequence[RunMetrics]) -> list[list[str]]:
    """The table as text cells, one row per run."""
    return [
        [
            m.dataset,
            m.label,
            f"{m.problems}×{m.attempts // max(1, m.problems)}",
            f"{100 * m.acc:.1f}",
            f"{m.tok:.0f}",
            f"{m.solve_tok:.0f}",
            f"{m.tpi:.0f}",
            f"{100 * m.hard:.0f}",
            str(m.errors),
            f"{m.prompt_tokens:.0f}",
            f"{m.calls:.1f}",
            f"{m.seconds:.1f}",
        ]
        for m in metrics
    ]


def stage_rows(metrics: Sequence[RunMetrics]) -> list[list[str]]:
    """Tok split by stage and by mode, one row per run."""
    stages = sorted({s for m in metrics for s in m.tok_by_stage})
    header = ["dataset", "method", *stages, "System 1", "System 2", "control"]
    rows = [
        [
            m.dataset,
            m.label,
            *(f"{m.tok_by_stage.get(s, 0):.0f}" for s in stages),
            *(f"{m.tok_by_mode[k]:.0f}" for k in ("system1", "system2", "control")),
        ]
        for m in metrics
    ]
    return [header, *rows]


def markdown(metrics: Sequence[RunMetrics]) -> str:
    """The main table and the token split as Markdown."""

    def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

    split = stage_rows(metrics)
    notes = [f"- {m.dataset} / {m.label}: grading {_counts(m.grade_status)}"
             + (f" ({m.errors} of the errors: attempts the endpoint rejected)" if m.errors else "")
             for m in metrics if set(m.grade_status) - {"ok"}]
    parts = [
        "## Results",
        "",
        md_table(COLUMNS, table_rows(metrics)),
        "",
        LEGEND,
        "",
        "## Completion tokens per attempt, by stage and mode",
        "",
        md_table(split[0], split[1:]),
    ]
    if notes:
        parts += ["", "## Grading notes (not ok counts as wrong)", "", *notes]
    return "\n".join(parts) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def use_agg() -> None:
    """Put matplotlib on its non-interactive Agg backend; call it before importing pyplot (done on first use)."""
    import matplotlib

    matplotlib.use("Agg")


def plot_accuracy_vs_tokens(metrics: Sequence[RunMetrics], path: Path) -> Path | None:
    """Acc against Tok: a panel per data set, one point per run, each named in the legend."""
    if not metrics:
        return None
    use_agg()
    import matplotlib.pyplot as plt

    datasets = sorted({m.dataset for m in metrics})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        markers = iter("osD^vP*Xph<>" * 4)
        for m in (m for m in metrics if m.dataset == dataset):
            ax.scatter(m.tok, 100 * m.acc, s=70, marker=next(markers), label=m.label)
        ax.set(
            title=f"{dataset}: accuracy vs tokens",
            xlabel="completion tokens per attempt (Tok)",
            ylabel="accuracy (pass@1, %)",
        )
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15)
        ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def plot_tau_sweep(metrics: Sequence[RunMetrics], path: Path) -> Path | None:
    """SCALE's Acc, Tok and Hard% against τ, one line per data set and System 2 budget.

    ``all-fast`` and ``all-deep`` are SCALE at τ = 1 and τ = -1, so they are points of the same lines.
    """
    series = _series(
        (m for m in metrics if m.method in SCALE_FAMILY and not m.settings.get("token_budget")),  # τ is theirs
        key="threshold",
        name=lambda m: f"{m.dataset} S2={m.settings.get('system2_max_tokens')}"
        + (" agreement" if m.settings.get("assess") == "agreement" else ""),
    )
    if not series:
        return None
    use_agg()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels: list[tuple[str, Callable[[RunMetrics], float]]] = [
        ("accuracy (pass@1, %)", lambda m: 100 * m.acc),
        ("completion tokens per attempt", lambda m: m.tok),
        ("System 2 share (Hard%)", lambda m: 100 * m.hard),
    ]
    for ax, (ylabel, value) in zip(axes, panels, strict=True):
        for name, points in series.items():
            ax.plot([x for x, _ in points], [value(m) for _, m in points], marker="o", label=name)
        ax.set(xlabel="threshold τ", ylabel=ylabel, xlim=_tau_limits(series))
        _percent_axis(ax, ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SCALE τ sweep")
    return save_figure(fig, path)


def plot_budget_sweep(metrics: Sequence[RunMetrics], path: Path) -> Path | None:
    """Acc and Tok against the System 2 budget, one line per data set and method (where it varies)."""
    series = _series(
        metrics,
        key="system2_max_tokens",
        name=lambda m: (
            f"{m.dataset} {m.method}" + (f" τ={m.settings['threshold']:g}" if m.method == "scale" else "")
        ),
    )
    series = {name: pts for name, pts in series.items() if len(pts) > 1}
    if not series:
        return None
    use_agg()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels: list[tuple[str, Callable[[RunMetrics], float]]] = [
        ("accuracy (pass@1, %)", lambda m: 100 * m.acc), ("completion tokens per attempt", lambda m: m.tok)]
    for ax, (ylabel, value) in zip(axes, panels, strict=True):
        for name, points in series.items():
            ax.plot([x for x, _ in points], [value(m) for _, m in points], marker="o", label=name)
        ax.set(xlabel="System 2 budget (max completion tokens)", ylabel=ylabel, xscale="log")
        _percent_axis(ax, ylabel)
        ax.set_xticks(sorted({x for pts in series.values() for x, _ in pts}))
        ax.get_xaxis().set_major_formatter("{x:.0f}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("System 2 budget sweep (System 1 budget fixed)")
    return save_figure(fig, path)


def _tau_limits(series: dict[str, list[tuple[float, RunMetrics]]]) -> tuple[float, float]:
    """The τ axis spans at least [0, 1] (its meaningful range), so even one point reads well."""
    taus = [x for points in series.values() for x, _ in points]
    return min(-0.05, min(taus) - 0.05), max(1.05, max(taus) + 0.05)


def _percent_axis(ax: Any, ylabel: str) -> None:
    """A percentage panel always spans 0-100, so runs of different sweeps compare at a glance."""
    if "%" in ylabel:
        ax.set_ylim(-5, 105)


def _series(
    metrics: Iterable[RunMetrics], *, key: str, name: Callable[[RunMetrics], str]
) -> dict[str, list[tuple[float, RunMetrics]]]:
    """Runs grouped into named lines of (setting ``key``, run) points, sorted by the setting."""
    out: dict[str, list[tuple[float, RunMetrics]]] = defaultdict(list)
    for m in metrics:
        if m.settings.get(key) is not None:
            out[name(m)].append((float(m.settings[key]), m))
    return {n: sorted(pts, key=lambda p: p[0]) for n, pts in out.items()}


def save_figure(fig: Figure, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (whole or not at all) and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path


def write_report(metrics: Sequence[RunMetrics], out_dir: Path) -> list[Path]:
    """``report.md`` and every plot there is data for, in ``out_dir``; returns the files written."""
    report = write_text_atomic(out_dir / "report.md", markdown(metrics))
    plots = [
        plot_accuracy_vs_tokens(metrics, out_dir / "accuracy_vs_tokens.png"),
        plot_tau_sweep(metrics, out_dir / "tau_sweep.png"),
        plot_budget_sweep(metrics, out_dir / "budget_sweep.png"),
    ]
    return [report, *(p for p in plots if p is not None)]

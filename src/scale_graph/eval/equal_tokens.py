"""Accuracy at equal tokens: SCALE routed under a token budget against SCALE with a fixed τ.

A budget run (``token_budget`` set) and the fixed-τ runs of the same data set, assessment policy and System 2 budget
(``scale``, ``all-fast`` = τ 1, ``all-deep`` = τ -1) are compared at the budget run's own cost: the fixed-τ runs,
sorted by Tok (completion tokens per attempt), make a curve, and its accuracy at the budget run's Tok is read off by
linear interpolation between the two runs around it. Outside the curve's range nothing is read off (no
extrapolation); the nearest fixed-τ run is named either way. ``scale sweep --token-budgets`` writes
``equal_tokens.md`` (and, with matplotlib, ``equal_tokens.png``) into its results directory.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scale_graph.eval.files import write_text_atomic
from scale_graph.eval.metrics import RunMetrics

SCALE_FAMILY = ("scale", "all-fast", "all-deep")
REPORT_FILE = "equal_tokens.md"
PLOT_FILE = "equal_tokens.png"


def _group(m: RunMetrics) -> tuple[str, str, object]:
    """What a budget run and the fixed-τ runs it is compared with share."""
    return m.dataset, str(m.settings.get("assess", "upfront")), m.settings.get("system2_max_tokens")


def is_budget_run(m: RunMetrics) -> bool:
    """True for a SCALE run routed under a token budget."""
    return m.method in SCALE_FAMILY and bool(m.settings.get("token_budget"))


def is_fixed_tau_run(m: RunMetrics) -> bool:
    """True for a SCALE-family run routed by a fixed τ."""
    return m.method in SCALE_FAMILY and not m.settings.get("token_budget")


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """The y of the polyline through ``points`` (sorted by x) at ``x``; None outside its x range.

    Where several points share an x, their mean y is used.
    """
    merged: dict[float, list[float]] = defaultdict(list)
    for px, py in points:
        merged[px].append(py)
    line = sorted((px, sum(ys) / len(ys)) for px, ys in merged.items())
    if not line or x < line[0][0] or x > line[-1][0]:
        return None
    for (x0, y0), (x1, y1) in itertools.pairwise(line):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return line[0][1]  # a single point, at exactly x


@dataclass
class Comparison:
    """One budget run against the fixed-τ curve of its group."""

    budget: RunMetrics
    fixed: list[RunMetrics]
    """The fixed-τ runs of the same data set, assessment policy and System 2 budget, by Tok."""
    fixed_acc: float | None
    """The fixed-τ curve's accuracy at the budget run's Tok (None: outside the curve, or no fixed-τ run)."""

    @property
    def nearest(self) -> RunMetrics | None:
        """The fixed-τ run whose Tok is closest to the budget run's."""
        return min(self.fixed, key=lambda m: abs(m.tok - self.budget.tok), default=None)

    @property
    def gain(self) -> float | None:
        """Budget routing's accuracy minus the fixed-τ curve's, at equal tokens."""
        return None if self.fixed_acc is None else self.budget.acc - self.fixed_acc


def compare(metrics: Sequence[RunMetrics]) -> list[Comparison]:
    """Every budget run against its group's fixed-τ runs, in data set and budget order."""
    fixed: dict[tuple[str, str, object], list[RunMetrics]] = defaultdict(list)
    for m in metrics:
        if is_fixed_tau_run(m):
            fixed[_group(m)].append(m)
    out = []
    for m in sorted((m for m in metrics if is_budget_run(m)),
                    key=lambda m: (m.dataset, m.label, int(m.settings["token_budget"]))):
        curve = sorted(fixed.get(_group(m), []), key=lambda f: f.tok)
        out.append(Comparison(m, curve, interpolate([(f.tok, f.acc) for f in curve], m.tok)))
    return out


def _tau(m: RunMetrics) -> str:
    return f"τ={float(m.settings.get('threshold', 0.0)):g}"


def markdown(comparisons: Sequence[Comparison]) -> str:
    """``equal_tokens.md``: each budget run's Acc beside the fixed-τ curve's at the same Tok."""
    lines = ["# Accuracy at equal tokens: budget routing vs fixed τ", "",
             "Each budget run is read against the fixed-τ SCALE runs of the same data set, assessment policy and "
             "System 2 budget: their accuracy at the budget run's Tok (completion tokens per attempt), by linear "
             "interpolation between the two fixed-τ runs around it (– outside their range).", ""]
    if not comparisons:
        return "\n".join([*lines, "No budget runs (`scale sweep --token-budgets N,…`) in these results.", ""])
    lines += ["| dataset | run | n | Tok | Acc % | fixed-τ Acc % at that Tok | Δ Acc (points) | nearest fixed-τ run "
              "(Tok, Acc %) | fixed-τ runs |", "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        b, near = c.budget, c.nearest
        nearest = "–"
        if near is not None:
            named = near.label if "τ=" in near.label else f"{near.label} {_tau(near)}"  # all-fast, all-deep
            nearest = f"{named} ({near.tok:.0f}, {100 * near.acc:.1f})"
        fixed_acc = "–" if c.fixed_acc is None else f"{100 * c.fixed_acc:.1f}"
        gain = "–" if c.gain is None else f"{100 * c.gain:+.1f}"
        lines.append(f"| {b.dataset} | {b.label} | {b.problems}×{b.attempts // max(1, b.problems)} | {b.tok:.0f} | "
                     f"{100 * b.acc:.1f} | {fixed_acc} | {gain} | {nearest} | {len(c.fixed)} |")
    return "\n".join(lines) + "\n"


def plot(comparisons: Sequence[Comparison], path: Path) -> Path | None:
    """``equal_tokens.png``: per data set, the fixed-τ curve (Acc against Tok) and the budget runs as stars.

    None when there is nothing to draw or matplotlib (the ``eval`` extra) is not installed.
    """
    if not comparisons:
        return None
    try:
        from scale_graph.eval.report import save_figure, use_agg  # noqa: PLC0415 - pulls in the optional plotting

        use_agg()
        import matplotlib.pyplot as plt  # noqa: PLC0415 - the eval extra, only where a plot is made
    except ImportError:
        return None
    datasets = sorted({c.budget.dataset for c in comparisons})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        drawn: set[int] = set()
        for c in (c for c in comparisons if c.budget.dataset == dataset):
            if c.fixed and id(c.fixed[0]) not in drawn:
                drawn.add(id(c.fixed[0]))
                ax.plot([f.tok for f in c.fixed], [100 * f.acc for f in c.fixed], marker="o",
                        label=f"fixed τ ({c.fixed[0].settings.get('assess', 'upfront')})")
                for f in c.fixed:
                    ax.annotate(_tau(f), (f.tok, 100 * f.acc), textcoords="offset points", xytext=(4, -10),
                                fontsize=7)
            ax.scatter([c.budget.tok], [100 * c.budget.acc], marker="*", s=160, zorder=3, label=c.budget.label)
        ax.set(title=f"{dataset}: accuracy at equal tokens", xlabel="completion tokens per attempt (Tok)",
               ylabel="accuracy (pass@1, %)")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)


def write_comparison(metrics: Sequence[RunMetrics], out_dir: Path) -> list[Path]:
    """``equal_tokens.md`` (and the plot) in ``out_dir``; nothing when there are no budget runs."""
    comparisons = compare(metrics)
    if not comparisons:
        return []
    written = [write_text_atomic(out_dir / REPORT_FILE, markdown(comparisons))]
    figure = plot(comparisons, out_dir / PLOT_FILE)
    return written + ([figure] if figure is not None else [])

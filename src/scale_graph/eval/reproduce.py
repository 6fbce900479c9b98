"""``scale reproduce``'s engine: Table 1's grid as ordinary eval runs, and the table of ours beside the paper's.

The grid is data sets × methods (by default AIME24, AIME25, AMC23 × CoT, Majority-Voting, InftyThink, SCALE at
τ = 0.2), each cell one :class:`~scale_graph.eval.runner.EvalRun` with the same Context (the ``paper`` profile)
into one results directory. A cell is therefore resumable exactly like ``scale eval``: running the grid again
runs only the attempts that are not in its results file yet.

:func:`comparison_markdown` puts each cell's metrics (over exactly that cell's attempts, so a ``--limit`` run
reads only its own problems even when the file holds more) beside the paper's published numbers for the model
that was served (:mod:`scale_graph.eval.paper`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from scale_graph.baselines.context import BaselineContext
from scale_graph.context import Context
from scale_graph.eval.datasets import load_dataset
from scale_graph.eval.methods import get_method
from scale_graph.eval.metrics import RunMetrics, compute
from scale_graph.eval.paper import PaperModel, PaperTable, fmt_paper, table1
from scale_graph.eval.results import attempt_key, read_rows
from scale_graph.eval.runner import EvalRun

DATASETS = ("aime24", "aime25", "amc23")
"""Table 1's data sets, in its order."""
METHODS = ("cot", "majority", "inftythink", "scale")
"""Table 1's methods, the cheapest first (so a partial run has the baselines)."""
PAPER_NAMES = {"cot": "CoT", "majority": "Majority-Voting", "inftythink": "InftyThink", "scale": "SCALE"}


@dataclass
class Cell:
    """One data set × method of the grid: its run and, once it has rows, its metrics."""

    dataset: str
    method: str
    run: EvalRun
    metrics: RunMetrics | None = None


def grid(
    context: Context,
    out_dir: Path,
    *,
    datasets: Sequence[str] = DATASETS,
    methods: Sequence[str] = METHODS,
    samples: int = 8,
    limit: int | None = None,
    concurrency: int = 1,
) -> list[Cell]:
    """The cells, data set by data set; ``context`` must have a live endpoint (it is resolved per method)."""
    return [
        Cell(d, m, EvalRun(dataset=load_dataset(d), method=get_method(m), context=context, out_dir=out_dir,
                           samples=samples, limit=limit, concurrency=concurrency))
        for d in datasets
        for m in methods
    ]


def cell_metrics(cell: Cell) -> RunMetrics | None:
    """The metrics of the cell's own attempts (None before any has a row); also stored on the cell."""
    wanted = {(p.id, i) for p, i in cell.run.attempts()}
    rows = [r for r in read_rows(cell.run.path) if attempt_key(r) in wanted]
    cell.metrics = compute(rows) if rows else None
    return cell.metrics


def served_model(cells: Sequence[Cell]) -> str | None:
    """The model name the grid ran (or would run) against."""
    return next((c.run.context.model for c in cells if c.run.context.model), None)


def _ours(m: RunMetrics | None, value: str) -> str:
    if m is None:
        return "not run"
    return {
        "n": f"{m.problems}×{m.attempts // max(1, m.problems)}",
        "acc": f"{100 * m.acc:.2f}",
        "tok": f"{m.tok:,.0f}",
        "solve": f"{m.solve_tok:,.0f}",
        "tpi": f"{m.tpi:,.0f}",
        "hard": f"{100 * m.hard:.2f}",
        "errors": str(m.errors),
    }[value]


COLUMNS = ("data set", "method", "n", "Acc % paper", "Acc % ours", "Tok paper", "Tok ours", "solve Tok ours",
           "Tpi paper", "Tpi ours", "Hard % paper", "Hard % ours", "errors")


def comparison_rows(cells: Sequence[Cell], paper: PaperModel) -> list[list[str]]:
    """One row per cell: the paper's value beside ours for Acc, Tok (ours also solve-only), Tpi and Hard%."""
    rows = []
    for c in cells:
        pub, m = paper.cell(c.dataset, c.method), c.metrics
        rows.append([
            c.dataset, PAPER_NAMES.get(c.method, c.method), _ours(m, "n"),
            fmt_paper(pub.get("acc"), percent=True), _ours(m, "acc"),
            fmt_paper(pub.get("tok")), _ours(m, "tok"), _ours(m, "solve"),
            fmt_paper(pub.get("tpi")), _ours(m, "tpi"),
            fmt_paper(pub.get("hard"), percent=True), _ours(m, "hard"),
            _ours(m, "errors"),
        ])
    return rows


def average_rows(cells: Sequence[Cell], paper: PaperModel) -> list[list[str]]:
    """Avg. Acc per method: the paper's (over its three data sets) beside ours (over the data sets we have)."""
    out = []
    for method in dict.fromkeys(c.method for c in cells):
        done = [c.metrics for c in cells if c.method == method and c.metrics is not None]
        total = sum(c.method == method for c in cells)
        ours = f"{100 * fmean(m.acc for m in done):.2f}" if done else "not run"
        if done and len(done) < total:
            ours += f" ({len(done)} of {total} data sets)"
        published = paper.avg_acc.get(method)
        out.append([PAPER_NAMES.get(method, method), fmt_paper(published, percent=True), ours])
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def comparison_markdown(cells: Sequence[Cell], *, limit: int | None = None, samples: int = 8,
                        table: PaperTable | None = None) -> str:
    """``table.md``: which paper model we compare with, the per-cell table, Avg. Acc, and how to read them."""
    table = table or table1()
    served = served_model(cells)
    paper, matched = table.for_model(served)
    which = (f"compared with the paper's **{paper.name}** rows (matched by name)" if matched else
             f"not one of the paper's models, so compared with the paper's **{paper.name}** rows")
    scope = (f"the first {limit} problem(s) of each data set, {samples} sample(s) each: a smoke run, not "
             "comparable with the paper's numbers" if limit or samples != 8 else
             "every problem, 8 samples each (as the paper)")
    settings = cells[0].run.context if cells else None
    # The CLI runs every cell on a BaselineContext; a plain Context (grid's API allows one) has no rounds.
    infty = (f", InftyThink {settings.rounds} rounds × {settings.round_max_tokens}"
             if isinstance(settings, BaselineContext) else "")
    knobs = (f"k = {settings.candidates}, τ = {settings.threshold:g}, budgets S1/S2/control "
             f"{settings.system1_max_tokens}/{settings.system2_max_tokens}/{settings.control_max_tokens}"
             f"{infty}") if settings else ""
    parts = [
        "# SCALE Table 1: the paper's numbers and ours",
        "",
        f"Served model: `{served or 'unknown'}`: {which}.",
        f"Ours: {scope}; {knobs}.",
        "",
        _md_table(COLUMNS, comparison_rows(cells, paper)),
        "",
        "## Average accuracy over the data sets",
        "",
        _md_table(("method", "Avg. Acc % paper", "Avg. Acc % ours"), average_rows(cells, paper)),
        "",
        "## How to read it",
        "",
        "- Acc: pass@1 averaged over the samples (Majority-Voting: one vote over the samples per problem). "
        "An attempt the endpoint rejected counts as wrong (errors column).",
        "- Tok: completion tokens per attempt over every call, the scaffolding (decompose, select, assess) "
        "included; solve Tok: without it (System 1/2 units; InftyThink's rounds with their summaries). The "
        "paper's Tok is total response tokens per problem.",
        "- Tpi: completion tokens per unit (SCALE: sub-problem; InftyThink: round with its summary; CoT and "
        "Majority-Voting: sample). Hard %: share of SCALE's sub-problems on System 2, the forced final System 2 "
        "step included (the paper's Hard); for the baselines every unit is System 2.",
        "- Paper values: \"/\" as printed in the paper, \"—\" not published.",
        f"- Source: {table.source}",
        *(f"- {note}" for note in table.notes),
    ]
    return "\n".join(parts) + "\n"


def plot_comparison(cells: Sequence[Cell], path: Path, *, table: PaperTable | None = None) -> Path | None:
    """``paper_vs_ours.png``: Acc against Tok per data set, ours filled and the paper's hollow, a colour per method."""
    done = [c for c in cells if c.metrics is not None]
    if not done:
        return None
    from scale_graph.eval.report import save_figure, use_agg

    paper, _ = (table or table1()).for_model(served_model(cells))
    use_agg()
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(c.dataset for c in done))
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(c.method for c in cells))}
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for c in (c for c in done if c.dataset == dataset):
            name, pub, m = PAPER_NAMES.get(c.method, c.method), paper.cell(dataset, c.method), c.metrics
            assert m is not None
            ax.scatter(m.tok, 100 * m.acc, s=70, color=colours[c.method], label=f"{name} (ours)")
            if isinstance(pub.get("tok"), int | float) and isinstance(pub.get("acc"), int | float):
                ax.scatter(pub["tok"], pub["acc"], s=70, facecolors="none", edgecolors=colours[c.method],
                           label=f"{name} ({paper.name}, paper)")
        ax.set(title=f"{dataset}: accuracy vs tokens", xlabel="completion tokens per attempt (Tok)",
               ylabel="accuracy (pass@1, %)", ylim=(-5, 105))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)

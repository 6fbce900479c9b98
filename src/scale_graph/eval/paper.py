"""The paper's published Table 1 (``data/paper_table1.json``) and which of its models a served model is.

The numbers are the paper's (SCALE, AAAI 2026, arXiv:2512.00466): Acc, Tpi and Tok for four reasoning models ×
four methods × AIME24, AIME25, AMC23, and the Avg. Acc column; the only published Hard% values (Qwen3-32B,
SCALE, AIME24/AIME25) come from Table 2's τ = 0.2 row. The JSON file says so in its ``source`` and ``notes``
(shown under every comparison table); its ``format`` describes the file itself.

A cell value is a number, ``"/"`` where the paper prints "/" (Tpi and Hard% of Majority-Voting), or None where
the paper publishes nothing.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

PaperValue = float | int | str | None
"""A published number, ``"/"`` (printed as such in the paper) or None (not published)."""


@dataclass(frozen=True)
class PaperModel:
    """One model's rows of Table 1."""

    name: str
    """The paper's name for it, e.g. ``Qwen3-32B``."""
    hf_id: str
    match: tuple[str, ...]
    cells: dict[str, dict[str, dict[str, PaperValue]]]
    """method → data set → {"acc", "tpi", "tok", "hard"}."""
    avg_acc: dict[str, float]
    """method → the paper's Avg. Acc (%) over the three data sets."""

    def cell(self, dataset: str, method: str) -> dict[str, PaperValue]:
        """The published values of one data set × method ({} when the paper has no such cell)."""
        return self.cells.get(method, {}).get(dataset, {})


@dataclass(frozen=True)
class PaperTable:
    """Table 1 as shipped: its models, where the numbers come from and the default model."""

    source: str
    notes: tuple[str, ...]
    default_model: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    models: dict[str, PaperModel]

    def for_model(self, served: str | None) -> tuple[PaperModel, bool]:
        """The paper's model a served model name is, and whether it matched (else the default model, False).

        Names are compared lower-case with punctuation removed, so ``Qwen/Qwen3-32B``, ``qwen3-32b-awq`` and
        ``Qwen3_32B`` all match ``Qwen3-32B``; the longest matching fragment wins.
        """
        key = _normal(served or "")
        found = [(len(_normal(f)), m) for m in self.models.values() for f in m.match if key and _normal(f) in key]
        if found:
            return max(found, key=lambda pair: pair[0])[1], True
        return self.models[self.default_model], False


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.cache
def table1() -> PaperTable:
    """The paper's Table 1, read from the package data once."""
    raw: dict[str, Any] = json.loads(
        resources.files("scale_graph").joinpath("data/paper_table1.json").read_text(encoding="utf-8")
    )
    models = {
        name: PaperModel(name=name, hf_id=m["hf_id"], match=tuple(m["match"]), cells=m["cells"],
                         avg_acc=m["avg_acc"])
        for name, m in raw["models"].items()
    }
    return PaperTable(source=raw["source"], notes=tuple(raw["notes"]), default_model=raw["default_model"],
                      datasets=tuple(raw["datasets"]), methods=tuple(raw["methods"]), models=models)


def fmt_paper(value: PaperValue, *, percent: bool = False) -> str:
    """A published value as a table cell: ``73.33``, ``7,409``, ``/`` or ``—`` (not published)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.2f}" if percent else f"{value:,.0f}"

"""Fine-tuning data from SCALE runs (the paper's second setting: SCALE traces teach non-reasoning models).

Each kept attempt becomes one chat-format example: the problem as the user turn, and as the assistant turn the
chain of sub-problems, each with its solution, then the boxed final answer. Only attempts of the SCALE family
(``scale``, ``all-fast``, ``all-deep``) have such a chain; with ``correct_only`` only verified-correct ones
are kept.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scale_graph import prompts
from scale_graph.eval.results import Row

TRACE_SYSTEM = prompts.COT_SYSTEM
"""The system turn of every example: the same zero-shot instruction the baselines get."""


def trace_text(row: Row) -> str:
    """The assistant turn: each sub-problem and its solution in order, then the boxed answer."""
    parts = [f"Sub-problem {u['index'] + 1}: {u['text']}\n{u['solution'].strip()}" for u in row["units"]]
    parts.append(f"Final answer: \\boxed{{{row['answer']}}}")
    return "\n\n".join(parts)


def example(row: Row) -> dict[str, Any]:
    """One chat-format training example, with where it came from."""
    return {
        "messages": [
            {"role": "system", "content": TRACE_SYSTEM},
            {"role": "user", "content": prompts.COT_USER.format(problem=row["problem"])},
            {"role": "assistant", "content": trace_text(row)},
        ],
        "meta": {k: row[k] for k in ("run", "dataset", "problem_id", "sample", "method", "gold")},
    }


def drop_reason(row: Row, correct_only: bool) -> str | None:
    """Why a row gives no example (None: it does)."""
    if row.get("unit") != "sub-problem" or not row.get("units"):
        return "not a SCALE trace"
    if row.get("answer") is None:
        return "no answer"
    if correct_only and not row.get("correct"):
        return "not verified correct"
    return None


def write_traces(rows: Iterable[Row], out: Path, *, correct_only: bool) -> tuple[int, Counter[str]]:
    """Write the examples to ``out`` (JSONL); returns how many were kept and why the others were dropped."""
    kept, dropped = 0, Counter[str]()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for row in rows:
            reason = drop_reason(row, correct_only)
            if reason:
                dropped[reason] += 1
                continue
            fh.write(json.dumps(example(row), ensure_ascii=False) + "\n")
            kept += 1
    return kept, dropped

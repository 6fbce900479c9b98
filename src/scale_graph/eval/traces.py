"""Fine-tuning data from SCALE runs (the paper's second setting: SCALE traces teach non-reasoning models).

Each kept attempt becomes one chat-format example: the problem as the user turn, and as the assistant turn the
chain of sub-problems, each with its solution, then the boxed final answer. Only attempts of the SCALE family
(``scale``, ``all-fast``, ``all-deep``) have such a chain; with ``correct_only`` only verified-correct ones
are kept.

A step solved with thinking on (System 2 of a reasoning model) also has its *reasoning*: the text the server
returned apart from the answer (vLLM's reasoning parser). How it is exported is the ``reasoning`` mode:

- ``inline`` (default): a ``<think>…</think>`` block before that step's solution, inside the assistant text.
  Any SFT tool reads it, and a model trained on it learns to think before the hard steps only.
- ``field``: the assistant message gets ``reasoning_content`` (the field vLLM returns and several SFT tools'
  chat templates read): every step's reasoning in order, each headed by its sub-problem; ``content`` is as
  with ``none``.
- ``none``: sub-problems and solutions only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from scale_graph import prompts
from scale_graph.eval.files import atomic_path
from scale_graph.eval.results import Row

ReasoningMode = Literal["inline", "field", "none"]
REASONING_MODES: tuple[ReasoningMode, ...] = ("inline", "field", "none")
DEFAULT_REASONING: ReasoningMode = "inline"

TRACE_SYSTEM = prompts.COT_SYSTEM
"""The system turn of every example: the same zero-shot instruction the baselines get."""


def _reasoning(unit: dict[str, Any]) -> str:
    """A step's reasoning text, stripped ('' when the step had none, e.g. System 1 with thinking off)."""
    return str(unit.get("reasoning") or "").strip()


def _heading(unit: dict[str, Any]) -> str:
    return f"Sub-problem {unit['index'] + 1}: {unit['text']}"


def trace_text(row: Row, reasoning: ReasoningMode = "none") -> str:
    """The assistant turn: each sub-problem and its solution in order, then the boxed answer.

    With ``reasoning="inline"`` a step's reasoning comes as ``<think>…</think>`` before its solution.
    """
    parts = []
    for unit in row["units"]:
        thought = _reasoning(unit) if reasoning == "inline" else ""
        think = f"<think>\n{thought}\n</think>\n" if thought else ""
        parts.append(f"{_heading(unit)}\n{think}{unit['solution'].strip()}")
    parts.append(f"Final answer: \\boxed{{{row['answer']}}}")
    return "\n\n".join(parts)


def reasoning_text(row: Row) -> str:
    """Every step's reasoning in order, each under its sub-problem ('' when no step has any)."""
    return "\n\n".join(f"{_heading(u)}\n{_reasoning(u)}" for u in row["units"] if _reasoning(u))


def example(row: Row, reasoning: ReasoningMode = DEFAULT_REASONING) -> dict[str, Any]:
    """One chat-format training example, with where it came from."""
    if reasoning not in REASONING_MODES:
        raise ValueError(f"unknown reasoning mode {reasoning!r}; choose one of {', '.join(REASONING_MODES)}")
    assistant: dict[str, Any] = {"role": "assistant", "content": trace_text(row, reasoning)}
    if reasoning == "field" and (thought := reasoning_text(row)):
        assistant["reasoning_content"] = thought
    return {
        "messages": [
            {"role": "system", "content": TRACE_SYSTEM},
            {"role": "user", "content": prompts.COT_USER.format(problem=row["problem"])},
            assistant,
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


def write_traces(
    rows: Iterable[Row], out: Path, *, correct_only: bool, reasoning: ReasoningMode = DEFAULT_REASONING
) -> tuple[int, Counter[str]]:
    """Write the examples to ``out`` (JSONL, replaced whole at the end).

    Returns how many were kept and why the others were dropped.
    """
    kept, dropped = 0, Counter[str]()
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            reason = drop_reason(row, correct_only)
            if reason:
                dropped[reason] += 1
                continue
            fh.write(json.dumps(example(row, reasoning), ensure_ascii=False) + "\n")
            kept += 1
    return kept, dropped

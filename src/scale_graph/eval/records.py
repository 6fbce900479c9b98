"""One finished attempt as a results row: answer, grade, tokens by stage and by mode, unit records.

A *unit* is what Tpi divides by: a sub-problem (SCALE, all-fast, all-deep), a sample (cot, majority) or a
round (inftythink). Every method's output is turned into the same list of unit records here, so metrics and
reports need not know the methods apart.
"""

from __future__ import annotations

from typing import Any

from scale_graph.eval.methods import Method

Output = dict[str, Any]


def units(method: Method, output: Output) -> list[dict[str, Any]]:
    """The unit records of an attempt, in order."""
    if method.unit == "sub-problem":
        return [
            {
                "index": s["index"],
                "text": s["subproblem"],
                "mode": s["mode"],
                "difficulty": s["difficulty"],
                "assessed_difficulty": s.get("assessed_difficulty", s["difficulty"]),
                "forced": s.get("forced"),
                "from_sample": s.get("from_sample"),
                "threshold": s.get("threshold"),
                "solution": s["solution"],
                "reasoning": s["reasoning"],
                "prompt_tokens": s["prompt_tokens"],
                "completion_tokens": s["completion_tokens"],
                "finish_reason": s["finish_reason"],
                "fallback": s["fallback"],
            }
            for s in output.get("steps") or []
        ]
    if method.unit == "sample":
        return [
            {
                "index": s["index"],
                "mode": "system2",
                "solution": s["solution"],
                "reasoning": s["reasoning"],
                "answer": s["answer"],
                "prompt_tokens": s["prompt_tokens"],
                "completion_tokens": s["completion_tokens"],
                "finish_reason": s["finish_reason"],
            }
            for s in output.get("samples") or []
        ]
    summaries = {s["index"]: s for s in output.get("summaries") or []}
    return [
        {
            "index": r["index"],
            "mode": "system2",
            "solution": r["solution"],
            "reasoning": r["reasoning"],
            "answer": r["answer"],
            "summary": summaries.get(r["index"], {}).get("text"),
            "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"],
            "summary_tokens": summaries.get(r["index"], {}).get("completion_tokens", 0),
            "finish_reason": r["finish_reason"],
        }
        for r in output.get("rounds") or []
    ]


def unit_tokens(unit: dict[str, Any]) -> int:
    """Completion tokens spent on one unit (a round's include its summary)."""
    return int(unit["completion_tokens"]) + int(unit.get("summary_tokens", 0))


def final_text(method: Method, output: Output, unit_records: list[dict[str, Any]]) -> str | None:
    """The text the grader reads.

    That is the method's boxed answer; with none, the last unit's reply as written (so the grader's no-box
    extraction applies), except for a vote, which has no single reply.
    """
    if output.get("answer") is not None:
        return f"\\boxed{{{output['answer']}}}"
    if method.votes_on_samples or not unit_records:
        return None
    return str(unit_records[-1]["solution"])


def token_summary(output: Output, unit_records: list[dict[str, Any]]) -> dict[str, Any]:
    """Completion tokens in all (the paper's Tok), by stage and by mode; prompt tokens; model calls.

    By mode: ``system1`` / ``system2`` are the solving units' tokens; ``control`` is everything else
    (decompose, select, assess, summarize).
    """
    usage = output.get("usage") or {}
    completion = sum(u["completion_tokens"] for u in usage.values())
    by_mode = {
        mode: sum(u["completion_tokens"] for u in unit_records if u["mode"] == mode)
        for mode in ("system1", "system2")
    }
    by_mode["control"] = completion - by_mode["system1"] - by_mode["system2"]
    return {
        "completion": completion,
        "prompt": sum(u["prompt_tokens"] for u in usage.values()),
        "by_stage": {stage: u["completion_tokens"] for stage, u in usage.items()},
        "by_mode": by_mode,
        "calls": sum(u["calls"] for u in usage.values()),
    }

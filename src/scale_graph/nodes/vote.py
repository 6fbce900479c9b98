r"""Baselines ``cot`` and ``majority``: the answer is the one given by the most samples.

Answers are grouped by mathematical equivalence (the grader's math-verify check, so ``\frac12`` and ``0.5``
are one vote), not by string equality. A tie goes to the group whose earliest sample came first. With one
sample (``cot``) its answer is taken as is, with no check at all.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph.context import Context
from scale_graph.grading import group_answers, majority
from scale_graph.nodes._runtime import emit
from scale_graph.nodes.finalize import NO_BOXED_ANSWER
from scale_graph.state import SamplingState, Vote


def vote(state: SamplingState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Group the samples' answers and pick the largest group (none boxed an answer: None, with the reason)."""
    samples = sorted(state.get("samples", []), key=lambda s: s["index"])
    groups = group_answers([s["answer"] for s in samples])
    votes = [
        Vote(answer=g.answer, samples=[samples[m]["index"] for m in g.members])
        for g in sorted(groups, key=lambda g: (-len(g.members), g.members[0]))
    ]
    winner = majority(groups)
    answer = winner.answer if winner else None
    fallback = None if answer is not None else NO_BOXED_ANSWER
    emit(runtime, "answer", answer=answer, fallback=fallback, votes=[len(v["samples"]) for v in votes])
    return {"votes": votes, "answer": answer, "answer_fallback": fallback}

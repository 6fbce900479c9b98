r"""Baselines ``cot`` and ``majority``: zero-shot chain-of-thought replies on the System 2 profile, then a vote.

``majority`` fans out ``BaselineContext.samples`` of them concurrently (one ``Send`` task each); ``cot`` runs one.
The answer is the one given by the most samples. Answers are grouped by mathematical equivalence (the grader's
math-verify check, so ``\frac12`` and ``0.5`` are one vote), not by string equality. A tie goes to the group whose
earliest sample came first. With one sample (``cot``) its answer is taken as is, with no check at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite, Send

from scale_graph import prompts
from scale_graph.answers import extract_boxed
from scale_graph.baselines.context import BaselineContext, knobs
from scale_graph.baselines.state import Sample, SampleTask, SamplingPlan, SamplingState, Vote
from scale_graph.grading import group_answers, majority
from scale_graph.models import ModelReply, acall_model, messages_for
from scale_graph.nodes._runtime import aprofiles_of, emit
from scale_graph.nodes.finalize import NO_BOXED_ANSWER
from scale_graph.problem import check_problem
from scale_graph.state import InputState


def reply_record(index: int, reply: ModelReply) -> Sample:
    r"""One reply as a record: its text, its last ``\boxed{}`` (or None) and its cost."""
    return Sample(
        index=index,
        solution=reply.content,
        reasoning=reply.reasoning,
        answer=extract_boxed(reply.content),
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        latency=round(reply.latency, 3),
        finish_reason=reply.finish_reason,
    )


FRESH_SAMPLING: dict[str, Any] = {"samples": Overwrite([]), "votes": [], "usage": Overwrite({}), "answer": None,
                                  "answer_fallback": None}
"""The per-problem state a new problem on a used thread replaces (``Overwrite`` bypasses the reducers)."""


def start_sampling(state: SamplingState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    """Reject an unusable problem; record n for the fan-out; a new problem on a used thread starts afresh."""
    update: dict[str, Any] = {"problem": check_problem(state.get("problem")),
                              "plan": SamplingPlan(samples=max(1, knobs(runtime).samples))}
    return {**update, **FRESH_SAMPLING} if state.get("samples") else update


def plan_samples(state: SamplingState) -> list[Send]:
    """Fan out: one ``sample`` task per sample not yet drawn (n from the run's plan)."""
    n, have = max(1, (state.get("plan") or {}).get("samples", 1)), len(state.get("samples") or [])
    return [Send("sample", SampleTask(problem=state["problem"], index=j)) for j in range(have, n)]


async def sample(task: SampleTask | InputState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    r"""One System 2 call with the zero-shot CoT prompt; the answer is its last ``\boxed{}``.

    Takes a ``Send`` payload (``majority``) or the graph input itself (``cot``: sample 0).
    """
    profile = (await aprofiles_of(runtime)).system2
    payload: Mapping[str, Any] = task  # a SampleTask has an index; the graph input (cot) has none: sample 0
    index = int(payload.get("index", 0))
    problem = check_problem(task.get("problem"))
    reply = await acall_model(
        profile,
        messages_for(profile, prompts.COT_SYSTEM, prompts.COT_USER.format(problem=problem)),
        run_name="sample",
        tags=["solve", "cot"],
        metadata={"stage": "solve", "sample": index},
    )
    result = reply_record(index, reply)
    emit(runtime, "sampled", index=index, answer=result["answer"], completion_tokens=reply.completion_tokens)
    return {"samples": [result], "usage": {"solve": reply.usage()}}

def vote(state: SamplingState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
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

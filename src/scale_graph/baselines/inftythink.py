"""Baseline ``inftythink`` (training-free InftyThink): reason in bounded rounds joined by summaries.

Round r sees the problem and the latest summary (none in round 0) and reasons with a budget of
``Context.round_max_tokens`` on the System 2 profile. A round that boxes an answer ends the run; otherwise a
control-profile call summarizes the progress, and the next round starts from that summary alone, so no prompt
grows with the length of the reasoning. After ``Context.rounds`` rounds the run ends with whatever the last
round gave.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from scale_graph import prompts
from scale_graph.baselines.context import BaselineContext, knobs
from scale_graph.baselines.sampling import reply_record
from scale_graph.baselines.state import InftyThinkPlan, InftyThinkState, Round, Summary
from scale_graph.models import acall_model, messages_for
from scale_graph.nodes._runtime import aprofiles_of, emit
from scale_graph.nodes.finalize import NO_BOXED_ANSWER
from scale_graph.problem import check_problem


def round_prompt(problem: str, summary: str | None, round_index: int, rounds: int) -> str:
    """The user prompt of round ``round_index``: the problem, then the latest summary when there is one."""
    if summary is None:
        return prompts.INFTY_FIRST.format(problem=problem)
    return prompts.INFTY_NEXT.format(problem=problem, summary=summary, round=round_index + 1, rounds=rounds)


FRESH_ROUNDS: dict[str, Any] = {"rounds": Overwrite([]), "summaries": Overwrite([]), "usage": Overwrite({}),
                                "answer": None, "answer_fallback": None}
"""The per-problem state a new problem on a used thread replaces (``Overwrite`` bypasses the reducers)."""


def start_rounds(state: InftyThinkState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    """Reject an unusable problem; record the round limit; a new problem on a used thread starts afresh."""
    update: dict[str, Any] = {"problem": check_problem(state.get("problem")),
                              "plan": InftyThinkPlan(rounds=max(1, knobs(runtime).rounds))}
    return {**update, **FRESH_ROUNDS} if state.get("rounds") else update


async def think(state: InftyThinkState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    """One reasoning round on the System 2 profile with the per-round budget."""
    ctx = knobs(runtime)
    profile = dataclasses.replace((await aprofiles_of(runtime)).system2, max_tokens=ctx.round_max_tokens)
    problem = check_problem(state.get("problem"))
    index = len(state.get("rounds", []))
    summaries = state.get("summaries", [])
    user = round_prompt(problem, summaries[-1]["text"] if summaries else None, index, ctx.rounds)
    reply = await acall_model(
        profile,
        messages_for(profile, prompts.INFTY_SYSTEM, user),
        run_name="think",
        tags=["solve", "inftythink"],
        metadata={"stage": "solve", "round": index},
    )
    result = Round(**reply_record(index, reply))
    emit(runtime, "round", index=index, answer=result["answer"], completion_tokens=reply.completion_tokens)
    return {"rounds": [result], "usage": {"solve": reply.usage()}}


def after_round(state: InftyThinkState) -> Literal["summarize", "conclude"]:
    """Conclude at a boxed answer or the round limit (from the run's plan); otherwise summarize and go on."""
    rounds = state.get("rounds", [])
    if not rounds:
        raise RuntimeError("after_round reached with no round")
    limit = max(1, (state.get("plan") or {}).get("rounds", 1))
    if rounds[-1]["answer"] is not None or len(rounds) >= limit:
        return "conclude"
    return "summarize"


async def summarize(state: InftyThinkState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    """Summarize the latest round (with the previous summary in view) on the control profile."""
    profile = (await aprofiles_of(runtime)).control
    last = state["rounds"][-1]
    summaries = state.get("summaries", [])
    previous = prompts.INFTY_PREVIOUS.format(summary=summaries[-1]["text"]) if summaries else ""
    reasoning = "\n".join(part for part in (last["reasoning"], last["solution"]) if part)
    user = prompts.INFTY_SUMMARY_USER.format(problem=state["problem"], previous=previous, reasoning=reasoning)
    reply = await acall_model(
        profile,
        messages_for(profile, prompts.INFTY_SUMMARY_SYSTEM, user),
        run_name="summarize",
        tags=["summarize", "inftythink"],
        metadata={"stage": "summarize", "round": last["index"]},
    )
    summary = Summary(
        index=last["index"], text=reply.content.strip(), completion_tokens=reply.completion_tokens
    )
    return {"summaries": [summary], "usage": {"summarize": reply.usage()}}


def conclude(state: InftyThinkState, runtime: Runtime[BaselineContext]) -> dict[str, Any]:
    """The answer is the last round's boxed answer; none → None with the reason recorded."""
    rounds = state.get("rounds", [])
    answer = rounds[-1]["answer"] if rounds else None
    fallback = None if answer is not None else NO_BOXED_ANSWER
    emit(runtime, "answer", answer=answer, fallback=fallback)
    return {"answer": answer, "answer_fallback": fallback}

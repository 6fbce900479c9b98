"""Stage 4: solve sub-problem i in its mode, with context C_i = P + every earlier (s_j, solution_j) (Eq. 5).

C_i is sent as a conversation (see ``solve_messages``) so consecutive requests extend each other exactly.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.runtime import Runtime

from scale_graph import prompts
from scale_graph.answers import extract_boxed
from scale_graph.context import Context
from scale_graph.models import ModelReply, Profiles, acall_model, messages_for
from scale_graph.nodes._runtime import aprofiles_of, emit, trace
from scale_graph.state import AgreementSample, Mode, State, StepResult


def solve_turn(problem: str, subproblems: list[str], index: int, instruction: str) -> str:
    """The user turn that asks for sub-problem ``index`` with its mode's instruction (the first also states P)."""
    template = prompts.SOLVE_CURRENT_LAST if index == len(subproblems) - 1 else prompts.SOLVE_CURRENT
    turn = template.format(number=index + 1, subproblem=subproblems[index], instruction=instruction)
    return prompts.PROBLEM.format(problem=problem) + turn if index == 0 else turn


def solve_messages(profiles: Profiles, problem: str, subproblems: list[str], steps: list[StepResult],
                   mode: Mode) -> list[BaseMessage]:
    """The context C_i of Eq. 5 as a conversation, ending with the user turn for s_i in ``mode``.

    Before it comes one (user: s_j, assistant: solution_j) exchange per earlier sub-problem, replayed exactly as
    it was sent and answered. Each request is thus the previous one plus the model's own reply plus one short
    turn: a prefix cache holds all of it but that last turn, whatever the modes.
    """
    instructions = [profiles.for_mode(m).instruction for m in [*(step["mode"] for step in steps), mode]]
    messages = messages_for(profiles.for_mode(mode), None, solve_turn(problem, subproblems, 0, instructions[0]))
    for step, instruction in zip(steps, instructions[1:], strict=True):
        messages += [AIMessage(step["solution"]),
                     HumanMessage(solve_turn(problem, subproblems, step["index"] + 1, instruction))]
    return messages


def reused_sample(state: State, mode: Mode) -> dict[str, Any] | None:
    """The update of a System 1 step that reuses the agreement assessor's modal sample, or None to call the model.

    Only ``assess="agreement"`` leaves samples on an assessment; each was sent exactly as this step's System 1
    request would be (same Eq. 5 context, same profile), so the modal one is this step's System 1 solution. Its
    tokens were counted under the ``assess`` stage when it was drawn, so the update adds no usage; the step's own
    token fields are the sample's (a unit's cost is what its solution cost).
    """
    i = len(state.get("steps", []))
    assessment = state["assessments"][str(i)]
    samples, modal = assessment.get("samples") or [], assessment.get("modal")
    if mode != "system1" or modal is None or not 0 <= modal < len(samples):
        return None
    return {"steps": [step_from(state, mode, samples[modal], from_sample=modal)]}


def reply_sample(reply: ModelReply) -> AgreementSample:
    """One model reply as a solution record (an agreement sample, or the makings of a step)."""
    return AgreementSample(
        answer=extract_boxed(reply.content), solution=reply.content, reasoning=reply.reasoning,
        prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
        cached_tokens=reply.cached_tokens, latency=round(reply.latency, 3), finish_reason=reply.finish_reason,
        fallback=reply.fit_note())


def step_from(state: State, mode: Mode, solved: AgreementSample, *, from_sample: int | None = None) -> StepResult:
    """The record of sub-problem i solved in ``mode`` by ``solved`` (a fresh reply or a reused sample)."""
    i = len(state.get("steps", []))
    assessment = state["assessments"][str(i)]
    step = StepResult(
        index=i,
        subproblem=state["subproblems"][i],
        difficulty=assessment["difficulty"],
        assessed_difficulty=assessment.get("assessed", assessment["difficulty"]),
        forced=assessment.get("forced"),
        mode=mode,
        solution=solved["solution"],
        reasoning=solved["reasoning"],
        prompt_tokens=solved["prompt_tokens"],
        completion_tokens=solved["completion_tokens"],
        cached_tokens=solved["cached_tokens"],
        latency=solved["latency"],
        finish_reason=solved["finish_reason"],
        fallback="; ".join(f for f in (assessment["fallback"], solved["fallback"]) if f) or None,
    )
    if from_sample is not None:
        step["from_sample"] = from_sample
    return with_threshold(step, state)


def with_threshold(step: StepResult, state: State) -> StepResult:
    """``step`` with the effective τ it was routed by, when the run routes under a token budget."""
    plan = state.get("budget_routing")
    if plan:
        step["threshold"] = plan["threshold"]
    return step


async def _solve(state: State, runtime: Runtime[Context], mode: Mode) -> dict[str, Any]:
    steps = state.get("steps", [])
    i = len(steps)
    assessment = state["assessments"][str(i)]
    if (update := reused_sample(state, mode)) is not None:
        emit(runtime, "solving", index=i, mode=mode, difficulty=assessment["difficulty"])
        emit(runtime, "solved", index=i, mode=mode, completion_tokens=update["steps"][0]["completion_tokens"],
             seconds=update["steps"][0]["latency"], reused_sample=assessment.get("modal"))
        return update
    profiles = await aprofiles_of(runtime)
    profile = profiles.for_mode(mode)
    emit(runtime, "solving", index=i, mode=mode, difficulty=assessment["difficulty"])
    reply = await acall_model(
        profile,
        solve_messages(profiles, state["problem"], state["subproblems"], steps, mode),
        **trace(runtime, "solve", state.get("problem_id"), mode=mode, subproblem=i,
                difficulty=assessment["difficulty"]),
    )
    step = step_from(state, mode, reply_sample(reply))
    emit(runtime, "solved", index=i, mode=mode, completion_tokens=reply.completion_tokens,
         seconds=step["latency"])
    return {"steps": [step], "usage": {"solve": reply.usage()}}


async def solve_fast(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """System 1: answer the sub-problem directly with the small budget (or reuse the agreement assessor's sample)."""
    return await _solve(state, runtime, "system1")


async def solve_deep(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """System 2: deliberate (thinking mode, or step-by-step prompt) with the large budget."""
    return await _solve(state, runtime, "system2")

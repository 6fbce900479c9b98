"""Stage 4: solve sub-problem i in its mode, with context C_i = P + every earlier (s_j, solution_j) (Eq. 5)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models import call_model, messages_for
from scale_graph.nodes._runtime import emit, profiles_of, trace
from scale_graph.state import Mode, State, StepResult

MODE_INSTRUCTION: dict[Mode, str] = {"system1": prompts.SOLVE_FAST, "system2": prompts.SOLVE_DEEP}


def solve_prompt(problem: str, subproblems: list[str], steps: list[StepResult], mode: Mode) -> str:
    """The user prompt for the next sub-problem: P, earlier (s_j, solution_j) in order, s_i, mode instruction.

    Consecutive prompts of one problem share a growing prefix whatever the modes, which prefix caches reuse.
    """
    i = len(steps)
    parts = [prompts.SOLVE_PROBLEM.format(problem=problem)]
    parts += [prompts.SOLVE_EARLIER_STEP.format(number=s["index"] + 1, subproblem=s["subproblem"],
                                                solution=s["solution"].strip()) for s in steps]
    template = prompts.SOLVE_CURRENT_LAST if i == len(subproblems) - 1 else prompts.SOLVE_CURRENT
    parts.append(template.format(number=i + 1, subproblem=subproblems[i], instruction=MODE_INSTRUCTION[mode]))
    return "".join(parts)


def _solve(state: State, runtime: Runtime[Context], mode: Mode) -> dict[str, Any]:
    profiles = profiles_of(runtime)
    steps = state.get("steps", [])
    i = len(steps)
    assessment = state["assessments"][str(i)]
    profile = profiles.for_mode(mode)
    emit(runtime, "solving", index=i, mode=mode, difficulty=assessment["difficulty"])
    reply = call_model(
        profile,
        messages_for(profile, None, solve_prompt(state["problem"], state["subproblems"], steps, mode)),
        **trace(runtime, "solve", state.get("problem_id"), mode=mode, subproblem=i,
                difficulty=assessment["difficulty"]),
    )
    step = StepResult(
        index=i,
        subproblem=state["subproblems"][i],
        difficulty=assessment["difficulty"],
        mode=mode,
        solution=reply.content,
        reasoning=reply.reasoning,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        cached_tokens=reply.cached_tokens,
        latency=round(reply.latency, 3),
        finish_reason=reply.finish_reason,
        fallback=assessment["fallback"],
    )
    emit(runtime, "solved", index=i, mode=mode, completion_tokens=reply.completion_tokens,
         seconds=step["latency"])
    return {"steps": [step], "usage": {"solve": reply.usage()}}


def solve_fast(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """System 1: answer the sub-problem directly with the small budget."""
    return _solve(state, runtime, "system1")


def solve_deep(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """System 2: deliberate (thinking mode, or step-by-step prompt) with the large budget."""
    return _solve(state, runtime, "system2")

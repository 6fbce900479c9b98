"""Stage 2: score each sub-problem's difficulty d_i in [0, 1].

Two policies (Context ``assess``): ``upfront`` scores every sub-problem at once (a ``Send`` task each) from P and
the earlier sub-problem texts, as the reference code does; ``contextual`` scores each one just before it is solved,
with the earlier solutions in view, as the paper's Eq. 3.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models import acall_json, messages_for
from scale_graph.nodes._runtime import aprofiles_of, context_of, emit, trace
from scale_graph.state import Assessment, AssessTask, State

DIFFICULTY_FALLBACK = "difficulty_unparsed→d=1.0"
"""Recorded when no usable score came back: d = 1.0 routes to System 2 for every τ < 1."""

FINAL_DIFFICULTY = 0.9
"""The difficulty the reference code forces on the final step (the original question): System 2 at any τ < 0.9."""

FORCED_FINAL = f"final_step=question→d={FINAL_DIFFICULTY}"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"difficulty": {"type": "number"}},
    "required": ["difficulty"],
    "additionalProperties": False,
}


def assess_task(state: State, index: int, *, contextual: bool) -> AssessTask:
    """The payload of one assessment: P, the sub-problems, and (contextual) the solved steps so far."""
    return AssessTask(problem=state["problem"], problem_id=state.get("problem_id"),
                      subproblems=list(state["subproblems"]), index=index,
                      steps=list(state.get("steps", [])) if contextual else [], contextual=contextual)


def plan_assessments(state: State, runtime: Runtime[Context]) -> list[Send] | Literal["route"]:
    """After selection: fan out every assessment (upfront), or go straight to the solve loop (contextual)."""
    if context_of(runtime).assess == "upfront":
        return [Send("assess", assess_task(state, i, contextual=False)) for i in range(len(state["subproblems"]))]
    return "route"


def parse_difficulty(data: Any) -> float:
    """The difficulty in a reply, or ``ValueError`` if it is missing, not a number, or outside [0, 1]."""
    value = data.get("difficulty") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"difficulty must be a number, got {value!r}")
    try:
        d = float(value)
    except ValueError:
        raise ValueError(f"difficulty must be a number, got {value!r}") from None
    if not math.isfinite(d) or not 0.0 <= d <= 1.0:
        raise ValueError(f"difficulty must be within [0, 1], got {d}")
    return d


def assess_prompt(task: AssessTask) -> str:
    """The assessment prompt: P, what came before sub-problem i, and s_i."""
    i = task["index"]
    if task["contextual"] and task["steps"]:
        items = "\n".join(f"{s['index'] + 1}. {s['subproblem']}\n   Solution: {s['solution']}"
                          for s in task["steps"][:i])
        earlier = prompts.EARLIER_SOLVED.format(items=items)
    elif i > 0:
        items = "\n".join(f"{j + 1}. {s}" for j, s in enumerate(task["subproblems"][:i]))
        earlier = prompts.EARLIER_SUBPROBLEMS.format(items=items)
    else:
        earlier = ""
    return prompts.ASSESS_USER.format(problem=task["problem"], earlier=earlier, subproblem=task["subproblems"][i])


async def assess(task: AssessTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Score one sub-problem; an unusable score is retried (bounded), then recorded as d = 1.0 with a fallback.

    Under ``final_step="question"`` the last sub-problem (the original question) is still scored, and the score
    kept as ``assessed``, but its difficulty is forced to :data:`FINAL_DIFFICULTY`, as the reference code does.
    """
    ctx, profiles = context_of(runtime), await aprofiles_of(runtime)
    i = task["index"]
    result = await acall_json(
        profiles.control,
        messages_for(profiles.control, None, assess_prompt(task)),
        schema_name="difficulty",
        schema=SCHEMA,
        parse=parse_difficulty,
        retries=ctx.content_retries,
        **trace(runtime, "assess", task.get("problem_id"), subproblem=i, policy=ctx.assess),
    )
    forced = FORCED_FINAL if ctx.final_step == "question" and i == len(task["subproblems"]) - 1 else None
    scored = result.value if result.value is not None else 1.0
    assessment = Assessment(
        index=i,
        difficulty=FINAL_DIFFICULTY if forced else scored,
        assessed=result.value,
        forced=forced,
        fallback=None if result.value is not None else DIFFICULTY_FALLBACK,
        contextual=task["contextual"],
        completion_tokens=result.usage()["completion_tokens"],
    )
    emit(runtime, "assessed", index=i, difficulty=assessment["difficulty"], assessed=result.value, forced=forced,
         fallback=assessment["fallback"])
    return {"assessments": {str(i): assessment}, "usage": {"assess": result.usage()}}

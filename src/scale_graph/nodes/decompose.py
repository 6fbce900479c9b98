"""Stage 1a: sample k candidate decompositions of P concurrently (one ``Send`` task each)."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models import call_json, messages_for
from scale_graph.nodes._runtime import context_of, emit, profiles_of, trace
from scale_graph.state import Candidate, DecomposeTask, State

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"subproblems": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["subproblems"],
    "additionalProperties": False,
}

_FINAL = re.compile(r"final answer|original problem|whole problem", re.IGNORECASE)


def plan_decompositions(state: State, runtime: Runtime[Context]) -> list[Send]:
    """Fan out: one ``decompose`` task per candidate (k from Context)."""
    problem = state["problem"]
    k = max(1, context_of(runtime).candidates)
    problem_id = state.get("problem_id")
    return [Send("decompose", DecomposeTask(problem=problem, problem_id=problem_id, index=j)) for j in range(k)]


def parse_decomposition(data: Any, max_subproblems: int) -> list[str]:
    """The sub-problem list of a reply, or ``ValueError`` if it is not 1..max non-empty strings.

    The last sub-problem must ask for the problem's final answer; when it does not, that request is appended.
    """
    if not isinstance(data, dict) or not isinstance(data.get("subproblems"), list):
        raise ValueError('expected {"subproblems": [...]}')
    subs = [s.strip() for s in data["subproblems"] if isinstance(s, str) and s.strip()]
    if len(subs) != len(data["subproblems"]):
        raise ValueError("every sub-problem must be a non-empty string")
    if not 1 <= len(subs) <= max_subproblems:
        raise ValueError(f"expected 1 to {max_subproblems} sub-problems, got {len(subs)}")
    if not _FINAL.search(subs[-1]):
        subs[-1] = subs[-1] + prompts.FINAL_ASK
    return subs


def decompose(task: DecomposeTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask for one decomposition as JSON; an unusable reply is retried (bounded), then dropped."""
    ctx, profiles = context_of(runtime), profiles_of(runtime)
    user = prompts.DECOMPOSE_USER.format(problem=task["problem"], max_subproblems=ctx.max_subproblems)
    result = call_json(
        profiles.control,
        messages_for(profiles.control, None, user),
        schema_name="decomposition",
        schema=SCHEMA,
        parse=lambda data: parse_decomposition(data, ctx.max_subproblems),
        retries=ctx.content_retries,
        **trace(runtime, "decompose", task.get("problem_id"), candidate=task["index"]),
    )
    candidate = Candidate(index=task["index"], subproblems=result.value, error=result.error)
    emit(runtime, "candidate", index=task["index"], valid=result.value is not None,
         subproblems=len(result.value or []), error=result.error)
    return {"candidates": [candidate], "usage": {"decompose": result.usage()}}

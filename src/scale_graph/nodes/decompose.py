"""Stage 1a: sample k candidate decompositions of P concurrently (one ``Send`` task each)."""

from __future__ import annotations

import re
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models import acall_json, messages_for
from scale_graph.nodes._runtime import aprofiles_of, context_of, emit, plan_of, trace
from scale_graph.state import Candidate, DecomposeTask, State

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"subproblems": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["subproblems"],
    "additionalProperties": False,
}

_FINAL = re.compile(r"final answer|original problem|whole problem", re.IGNORECASE)


def plan_decompositions(state: State) -> list[Send] | Literal["select"]:
    """Fan out: one ``decompose`` task per candidate not yet gathered (k from the run's plan).

    All k are missing on a run; a state edit written as ``start`` finds them gathered and goes on to ``select``
    instead of sampling k more.
    """
    problem, problem_id = state["problem"], state.get("problem_id")
    k, have = max(1, plan_of(state)["candidates"]), len(state.get("decompositions") or [])
    if have >= k:
        return "select"
    return [Send("decompose", DecomposeTask(problem=problem, problem_id=problem_id, index=j)) for j in range(have, k)]


def parse_decomposition(data: Any, max_subproblems: int, *, final_ask: bool) -> tuple[list[str], str | None]:
    """The sub-problem list of a reply and the fallback taken on it; ``ValueError`` if it is not usable.

    Usable: a non-empty list of non-empty strings. A list longer than ``max_subproblems`` keeps its first
    ``max - 1`` sub-problems and its last one, and says so in the fallback. With ``final_ask``, a last sub-problem
    that does not ask for the problem's final answer has that request appended.
    """
    if not isinstance(data, dict) or not isinstance(data.get("subproblems"), list):
        raise ValueError('expected {"subproblems": [...]}')
    subs = [s.strip() for s in data["subproblems"] if isinstance(s, str) and s.strip()]
    if len(subs) != len(data["subproblems"]):
        raise ValueError("every sub-problem must be a non-empty string")
    if not subs:
        raise ValueError("expected at least one sub-problem")
    fallback = None
    if len(subs) > max_subproblems:
        fallback = f"subproblems_truncated:{len(subs)}→{max_subproblems}"
        subs = [*subs[: max_subproblems - 1], subs[-1]] if max_subproblems > 1 else [subs[-1]]
    if final_ask and not _FINAL.search(subs[-1]):
        subs[-1] = subs[-1] + prompts.FINAL_ASK
    return subs, fallback


async def decompose(task: DecomposeTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask for one decomposition as JSON; an unusable reply is retried (bounded), then dropped."""
    ctx, profiles = context_of(runtime), await aprofiles_of(runtime)
    user = prompts.DECOMPOSE_USER.format(problem=task["problem"])
    result = await acall_json(
        profiles.control,
        messages_for(profiles.control, None, user),
        schema_name="decomposition",
        schema=SCHEMA,
        parse=lambda data: parse_decomposition(data, ctx.max_subproblems, final_ask=ctx.final_step == "decomposed"),
        retries=ctx.content_retries,
        **trace(runtime, "decompose", task.get("problem_id"), candidate=task["index"]),
    )
    subproblems, fallback = result.value if result.value is not None else (None, None)
    candidate = Candidate(index=task["index"], subproblems=subproblems, error=result.error, fallback=fallback)
    emit(runtime, "candidate", index=task["index"], valid=subproblems is not None,
         subproblems=len(subproblems or []), error=result.error, fallback=fallback)
    return {"decompositions": [candidate], "usage": {"decompose": result.usage()}}

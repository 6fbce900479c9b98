"""Stage 1b: pick one decomposition among the valid candidates (the model judges; skipped when only one)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from scale_graph import prompts
from scale_graph.context import Context
from scale_graph.models import acall_json, messages_for
from scale_graph.nodes._runtime import aprofiles_of, context_of, emit, trace
from scale_graph.state import State, empty_usage

NO_VALID_DECOMPOSITION = "no_valid_decomposition→whole_problem"
SELECTION_UNPARSED = "selection_unparsed→first_valid"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"choice": {"type": "integer"}},
    "required": ["choice"],
    "additionalProperties": False,
}


def with_final_step(subproblems: list[str], problem: str, final_step: str) -> list[str]:
    """The decomposition to solve, its final step as ``final_step`` says.

    Under ``"question"`` the last sub-problem is replaced by the original problem (as the reference code does),
    so the last solve answers the question itself with every earlier result in its context.
    """
    return [*subproblems[:-1], problem] if final_step == "question" else list(subproblems)


def distinct_valid(state: State) -> list[list[str]]:
    """Valid candidate decompositions in sample order, duplicates removed."""
    seen: set[tuple[str, ...]] = set()
    out: list[list[str]] = []
    for cand in sorted(state.get("decompositions", []), key=lambda c: c["index"]):
        subs = cand["subproblems"]
        if subs and tuple(subs) not in seen:
            seen.add(tuple(subs))
            out.append(subs)
    return out


def _format_candidates(options: list[list[str]]) -> str:
    blocks = []
    for n, subs in enumerate(options, start=1):
        lines = "\n".join(f"  {i}. {s}" for i, s in enumerate(subs, start=1))
        blocks.append(f"Candidate {n}:\n{lines}")
    return "\n\n".join(blocks)


async def select(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Choose the decomposition to solve.

    No valid candidate → the whole problem as the only sub-problem. One distinct valid candidate → it, with no
    model call. Several → the model picks; an unusable choice (after bounded retries) → the first valid one.
    Then the final step is set as ``Context.final_step`` says (:func:`with_final_step`).
    """
    options = distinct_valid(state)
    update: dict[str, Any] = {"decomposition_fallback": None, "selection_fallback": None,
                              "usage": {"select": empty_usage()}}
    if not options:
        chosen = [state["problem"]]
        update["decomposition_fallback"] = NO_VALID_DECOMPOSITION
    elif len(options) == 1:
        chosen = options[0]
    else:
        ctx, profiles = context_of(runtime), await aprofiles_of(runtime)
        count = len(options)

        def parse(data: Any) -> int:
            choice = data.get("choice") if isinstance(data, dict) else None
            if isinstance(choice, bool) or not isinstance(choice, int) or not 1 <= choice <= count:
                raise ValueError(f"choice must be an integer from 1 to {count}, got {choice!r}")
            return choice

        user = prompts.SELECT_USER.format(problem=state["problem"], count=count,
                                          candidates=_format_candidates(options))
        result = await acall_json(
            profiles.control,
            messages_for(profiles.control, None, user),
            schema_name="selection",
            schema=SCHEMA,
            parse=parse,
            retries=ctx.content_retries,
            **trace(runtime, "select", state.get("problem_id"), options=count),
        )
        update["usage"] = {"select": result.usage()}
        if result.value is None:
            chosen = options[0]
            update["selection_fallback"] = SELECTION_UNPARSED
        else:
            chosen = options[result.value - 1]
    chosen = with_final_step(chosen, state["problem"], context_of(runtime).final_step)
    update["subproblems"] = chosen
    emit(runtime, "decomposition", subproblems=chosen, options=len(options),
         fallback=update["decomposition_fallback"] or update["selection_fallback"])
    return update

"""Baselines ``cot`` and ``majority``: one zero-shot chain-of-thought reply on the System 2 profile.

``majority`` fans out ``Context.samples`` of them concurrently (one ``Send`` task each); ``cot`` runs one.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph import prompts
from scale_graph.context import Context, check_problem
from scale_graph.grading import extract_boxed
from scale_graph.models import ModelReply, acall_model, messages_for
from scale_graph.nodes._runtime import aprofiles_of, context_of, emit
from scale_graph.state import InputState, Sample, SampleTask


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


def plan_samples(state: InputState, runtime: Runtime[Context]) -> list[Send]:
    """Fan out: one ``sample`` task per sample (n from Context). Also rejects an unusable problem."""
    problem = check_problem(state.get("problem"))
    n = max(1, context_of(runtime).samples)
    return [Send("sample", SampleTask(problem=problem, index=j)) for j in range(n)]


async def sample(task: SampleTask | InputState, runtime: Runtime[Context]) -> dict[str, Any]:
    r"""One System 2 call with the zero-shot CoT prompt; the answer is its last ``\boxed{}``.

    Takes a ``Send`` payload (``majority``) or the graph input itself (``cot``: sample 0).
    """
    profile = (await aprofiles_of(runtime)).system2
    index = int(task.get("index", 0))  # type: ignore[arg-type]
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

"""Stage 2: score each sub-problem's difficulty d_i in [0, 1].

Three policies (Context ``assess``): ``upfront`` scores every sub-problem at once (a ``Send`` task each) from P and
the earlier sub-problem texts, as the reference code does; ``contextual`` scores each one just before it is solved,
with the earlier solutions in view, as the paper's Eq. 3; ``agreement`` (beyond the paper) asks no score at all: just
before sub-problem i is solved it samples System 1 on it ``agreement_samples`` times with its Eq. 5 context, and d
is how much those answers disagree (:func:`agreement_difficulty`). The samples are kept on the assessment, so a step
routed to System 1 reuses the modal one as its solution (``nodes/solve.py``) and an easy step costs no extra call.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from scale_graph import prompts
from scale_graph.answers import integer_box
from scale_graph.context import Context
from scale_graph.models import Profiles, acall_json, acall_model, messages_for
from scale_graph.nodes._runtime import aprofiles_of, context_of, emit, plan_of, trace
from scale_graph.nodes.solve import reply_sample, solve_messages
from scale_graph.state import AgreementSample, Assessment, AssessTask, State, Usage, add_usage

DIFFICULTY_FALLBACK = "difficulty_unparsed→d=1.0"
"""Recorded when no usable score came back: d = 1.0 routes to System 2 for every τ < 1."""

CONTEXTUAL_POLICIES = ("contextual", "agreement")
"""The policies that assess sub-problem i in the solve loop, just before it is solved (with the earlier solutions)."""

NO_AGREEMENT_ANSWER = "agreement_no_answer→d=1.0"
"""Recorded when no System 1 sample of the agreement assessor had a boxed answer (d = 1.0)."""

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


def plan_assessments(state: State) -> list[Send] | Literal["route"]:
    """After selection: fan out every assessment not yet made (upfront), or go straight to the solve loop.

    A state edit written as ``select`` (what LangGraph infers for an edit after the assessments, which ``Send``
    started) finds them made and goes on to ``route``, keeping the edit.
    """
    if plan_of(state)["assess"] != "upfront":
        return "route"
    done = state.get("assessments") or {}
    missing = [i for i in range(len(state["subproblems"])) if str(i) not in done]
    return [Send("assess", assess_task(state, i, contextual=False)) for i in missing] or "route"


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
    Under ``assess="agreement"`` the score comes from System 1 samples instead (:func:`assess_by_agreement`).
    """
    ctx, profiles = context_of(runtime), await aprofiles_of(runtime)
    if ctx.assess == "agreement":
        return await assess_by_agreement(task, runtime, ctx, profiles)
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


# --- the agreement assessor (assess="agreement") -----------------------------------------------------------------

_WRAPPED_UNIT = re.compile(r"\\(?:text|textrm|mathrm|mbox)\s*\{[^{}]*\}")
r"""``\text{ cm}`` and the like: units a small model puts in one box and leaves out of the next."""
_COSMETIC = re.compile(r"\\(?:left|right|displaystyle|[,;:! ])|\\?[$%]|\s+")
r"""Spacing, sizing, dollar and percent signs: what changes how an answer looks, not what it is."""
_GROUPED_COMMAS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_LEADING_NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+))(?:[A-Za-z]{2,})?$")
"""A number, maybe followed by a unit word (``72clips`` once the spaces are gone; one letter is a variable: 2x)."""


def answer_key(answer: str) -> str:
    r"""What two boxed answers must share to count as the same answer (plain text rules, nothing evaluated).

    The rewrite the grader applies to integers (:func:`~scale_graph.answers.integer_box`: ``1\,000``, ``90°``, a
    final period), then units in ``\text{}``, spacing, ``$`` and ``%`` are dropped, ``\dfrac`` is ``\frac``,
    thousands commas go, and a number (with a trailing unit word) is written in its shortest decimal form, so
    ``72``, ``72.0``, ``72 \text{ clips}`` and ``\$72`` are one answer. Anything else compares as written,
    whitespace aside. The grader's math-verify equivalence is stricter and costlier (a worker process per check);
    ``scale calibrate`` uses it to judge this assessor.
    """
    text = integer_box(answer)
    unwrapped = _WRAPPED_UNIT.sub("", text)
    text = unwrapped if unwrapped.strip() else text
    text = _COSMETIC.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    if _GROUPED_COMMAS.match(text):
        text = text.replace(",", "")
    if number := _LEADING_NUMBER.match(text):
        try:
            value = Decimal(number.group(1))
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            return text
        return format(value.normalize(), "f") if value else "0"
    return text


def agreement_difficulty(answers: Sequence[str | None]) -> tuple[float, int, int]:
    """The difficulty from m sampled answers, the sample that stands for the modal answer, and how many share it.

    d = (m - the largest number of equal answers) / (m - 1), in [0, 1]: 0 when every sample gives the same answer,
    1 when no two agree (or none has an answer). Answers are equal when their :func:`answer_key` is; a sample
    without an answer agrees with none. The modal sample is the first of the largest group (ties: the group whose
    first member came first); with no answer at all, the first sample.
    """
    m = len(answers)
    if m < 2:
        raise ValueError(f"agreement needs at least 2 samples, got {m}")
    groups: dict[str, list[int]] = {}
    for j, answer in enumerate(answers):
        if answer is not None:
            groups.setdefault(answer_key(answer), []).append(j)
    largest = min(groups.values(), key=lambda members: (-len(members), members[0]), default=[])
    agreeing = len(largest)
    return min(1.0, (m - agreeing) / (m - 1)), (largest[0] if largest else 0), agreeing


async def sample_system1(task: AssessTask, runtime: Runtime[Context], profiles: Profiles,
                         m: int) -> list[tuple[AgreementSample, Usage]]:
    """The m System 1 solves of sub-problem i, requested concurrently, each exactly the request solve_fast sends.

    The calls run together inside this one node (not a ``Send`` fan-out): d needs all of them, and a transport
    failure retries the node as a whole under its retry policy.
    """
    i = task["index"]
    messages = solve_messages(profiles, task["problem"], task["subproblems"], task["steps"][:i], "system1")

    async def one(j: int) -> tuple[AgreementSample, Usage]:
        reply = await acall_model(profiles.system1, messages,
                                  **trace(runtime, "assess", task.get("problem_id"), mode="system1", subproblem=i,
                                          policy="agreement", sample=j))
        return reply_sample(reply), reply.usage()

    return list(await asyncio.gather(*(one(j) for j in range(m))))


async def assess_by_agreement(task: AssessTask, runtime: Runtime[Context], ctx: Context,
                              profiles: Profiles) -> dict[str, Any]:
    """Sample System 1 ``agreement_samples`` times on sub-problem i and set d from the answers' disagreement.

    The samples go on the assessment with the modal one marked, for solve_fast to reuse. Under
    ``final_step="question"`` the last sub-problem's difficulty is forced to :data:`FINAL_DIFFICULTY` without
    sampling (no score of it would change the route at any τ < 0.9).
    """
    i = task["index"]
    if ctx.final_step == "question" and i == len(task["subproblems"]) - 1:
        assessment = Assessment(index=i, difficulty=FINAL_DIFFICULTY, assessed=None, forced=FORCED_FINAL,
                                fallback=None, contextual=True, completion_tokens=0, samples=[], modal=None)
        emit(runtime, "assessed", index=i, difficulty=FINAL_DIFFICULTY, assessed=None, forced=FORCED_FINAL,
             fallback=None, policy="agreement")
        return {"assessments": {str(i): assessment}}
    drawn = await sample_system1(task, runtime, profiles, ctx.agreement_samples)
    samples = [sample for sample, _ in drawn]
    usage: dict[str, Usage] = {}
    for _, used in drawn:
        usage = add_usage(usage, {"assess": used})
    d, modal, agreeing = agreement_difficulty([s["answer"] for s in samples])
    fallback = None if agreeing else NO_AGREEMENT_ANSWER
    assessment = Assessment(
        index=i, difficulty=round(d, 6), assessed=round(d, 6), forced=None, fallback=fallback, contextual=True,
        completion_tokens=sum(s["completion_tokens"] for s in samples), samples=samples, modal=modal)
    emit(runtime, "assessed", index=i, difficulty=assessment["difficulty"], assessed=assessment["difficulty"],
         forced=None, fallback=fallback, policy="agreement", samples=len(samples), agreeing=agreeing)
    return {"assessments": {str(i): assessment}, "usage": usage}

"""The data of one SCALE run: input, internal and output schemas, the records they hold, and reducers.

Everything here is a plain ``TypedDict`` so that checkpoints, the server API and ``--json`` output are plain JSON.
This module imports nothing of the project.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Annotated, Literal, NotRequired, TypedDict

Mode = Literal["system1", "system2"]
"""System 1 answers directly with a small budget; System 2 deliberates with a large one (the paper's Eq. 4)."""

Stage = Literal["decompose", "select", "assess", "solve"]
"""The stages whose model usage is counted separately."""

STAGES: tuple[Stage, ...] = ("decompose", "select", "assess", "solve")


class Usage(TypedDict):
    """Model usage summed over calls."""

    calls: int
    """Model requests that returned (content retries count, transport retries do not)."""
    prompt_tokens: int
    """Prompt tokens as the server reported them."""
    completion_tokens: int
    """Completion tokens as the server reported them (reasoning tokens included)."""
    cached_tokens: int
    """Prompt tokens the server served from its prefix cache (0 where it does not say)."""
    seconds: float
    """Wall time spent waiting for the model."""


def empty_usage() -> Usage:
    """A zero usage record."""
    return Usage(calls=0, prompt_tokens=0, completion_tokens=0, cached_tokens=0, seconds=0.0)


def add_usage(left: dict[str, Usage] | None, right: dict[str, Usage] | None) -> dict[str, Usage]:
    """Reducer: sum usage per stage. Returns a new dict; neither argument is changed."""
    out: dict[str, Usage] = {k: Usage(**v) for k, v in (left or {}).items()}
    for stage, u in (right or {}).items():
        cur = out.get(stage, empty_usage())
        out[stage] = Usage(
            calls=cur["calls"] + u["calls"],
            prompt_tokens=cur["prompt_tokens"] + u["prompt_tokens"],
            completion_tokens=cur["completion_tokens"] + u["completion_tokens"],
            cached_tokens=cur["cached_tokens"] + u["cached_tokens"],
            seconds=round(cur["seconds"] + u["seconds"], 6),
        )
    return out


def merge_assessments(
    left: dict[str, Assessment] | None, right: Mapping[str, Assessment | float] | None
) -> dict[str, Assessment]:
    """Reducer: gather difficulty assessments by sub-problem index (keys are strings for JSON).

    Every write is checked by :func:`check_assessments_edit`, so a state edit (Studio, ``update_state``) may use
    the shorthand ``{"0": 0.95}``, and a malformed one is refused before anything is written.
    """
    return {**(left or {}), **check_assessments_edit(right or {}, left)}


class InvalidEdit(ValueError):
    """A state edit with the wrong shape (LangGraph servers answer 400, ``scale serve`` 422)."""


_EDIT_SHAPE = ('expected {"<sub-problem index>": <difficulty in [0, 1]>, ...}, e.g. {"0": 0.95}, '
               "or full assessment records")


def _difficulty(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise InvalidEdit(f"assessments[{where}]: a difficulty must be a number in [0, 1], got {value!r}")
    return float(value)


def check_assessments_edit(value: object, current: Mapping[str, Assessment] | None = None) -> dict[str, Assessment]:
    """``value`` as assessment records by index, or :class:`InvalidEdit` saying what is wrong.

    Accepts ``{index: difficulty}`` (the shorthand of a state edit: the record is built from the ``current`` one,
    with ``forced`` saying it was edited) and ``{index: record}`` (what the nodes write, or a record edited in
    place). Indexes are non-negative integers, as strings in JSON.
    """
    if not isinstance(value, Mapping):
        raise InvalidEdit(f"assessments: {_EDIT_SHAPE}; got {type(value).__name__}")
    out: dict[str, Assessment] = {}
    for key, item in value.items():
        where = repr(key)
        if isinstance(key, bool) or not ((isinstance(key, int) and key >= 0)
                                         or (isinstance(key, str) and key.isdigit() and key.isascii())):
            raise InvalidEdit(f"assessments: keys are sub-problem indexes (0, 1, ...), got {where}; {_EDIT_SHAPE}")
        index = int(key)
        if isinstance(item, Mapping):
            unknown = sorted(set(map(str, item)) - (Assessment.__required_keys__ | Assessment.__optional_keys__))
            if unknown:
                raise InvalidEdit(f"assessments[{where}]: unknown fields {', '.join(unknown)}; {_EDIT_SHAPE}")
            if item.get("index", index) != index:
                raise InvalidEdit(f"assessments[{where}]: its index is {item.get('index')!r}, not {index}")
            record = dict(item)
            record.update(index=index, difficulty=_difficulty(item.get("difficulty"), where))
            record.setdefault("fallback", None)
            record.setdefault("contextual", False)
            record.setdefault("completion_tokens", 0)
            out[str(index)] = record  # type: ignore[assignment]  # checked above: Assessment's keys only
        else:
            difficulty = _difficulty(item, where)
            old = (current or {}).get(str(index))
            out[str(index)] = Assessment(
                index=index, difficulty=difficulty, assessed=old.get("assessed") if old else None,
                forced=f"edit→d={difficulty:g}", fallback=None, contextual=bool(old and old["contextual"]),
                completion_tokens=old["completion_tokens"] if old else 0)
    return out


class Candidate(TypedDict):
    """One candidate decomposition (stage 1); ``subproblems`` is None when the reply was unusable."""

    index: int
    """Which of the k samples this is (0-based)."""
    subproblems: list[str] | None
    """The ordered sub-problems, or None if the reply never parsed into a valid list."""
    error: str | None
    """Why the candidate was dropped, if it was."""
    fallback: NotRequired[str | None]
    """Set when the reply was usable only after a change, e.g. ``subproblems_truncated→20`` for a longer list."""


class AgreementSample(TypedDict):
    """One System 1 sample of the agreement assessor (``assess="agreement"``): a full System 1 solve of s_i."""

    answer: str | None
    """The last ``\\boxed{}`` of the solution, None when there is none."""
    solution: str
    """The visible solution text."""
    reasoning: str | None
    """Separate reasoning text, when the backend returns one."""
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency: float
    """Seconds the call took."""
    finish_reason: str | None
    fallback: str | None
    """``budget_capped→N`` / ``context_full…`` as on a solved step, else None."""


class Assessment(TypedDict):
    """The difficulty score of one sub-problem (stage 2)."""

    index: int
    """Sub-problem index (0-based)."""
    difficulty: float
    """The d_i the route uses, in [0, 1]: the model's score, 1.0 when it could not be used (``fallback`` says so),
    or the forced value of the final step (``forced`` says so)."""
    assessed: NotRequired[float | None]
    """The model's own score (None when it gave none), kept beside a forced ``difficulty``."""
    forced: NotRequired[str | None]
    """Why ``difficulty`` is not the model's score, e.g. ``final_step=question→d=0.9``, else None."""
    fallback: str | None
    """Set when the score was unparseable or out of range, e.g. ``difficulty_unparsed→1.0``."""
    contextual: bool
    """True when scored with earlier solutions in view (paper Eq. 3), False when scored upfront."""
    completion_tokens: int
    """Completion tokens spent on this assessment."""
    samples: NotRequired[list[AgreementSample]]
    """``assess="agreement"``: the System 1 samples d was measured from (empty for a forced final step)."""
    modal: NotRequired[int | None]
    """``assess="agreement"``: which sample stands for the largest group of equal answers; a step routed to
    System 1 reuses it as its solution instead of calling the model again."""


class StepResult(TypedDict):
    """One solved sub-problem (stage 4): what was asked, how it was routed, what came back."""

    index: int
    """Sub-problem index (0-based)."""
    subproblem: str
    """The sub-problem text s_i."""
    difficulty: float
    """The d_i the route used."""
    assessed_difficulty: NotRequired[float | None]
    """The model's own score for s_i (differs from ``difficulty`` when that was forced or a fallback)."""
    forced: NotRequired[str | None]
    """Why ``difficulty`` was forced (the final step under ``final_step=question``), else None."""
    mode: Mode
    """``system1`` when d_i <= τ, else ``system2``."""
    solution: str
    """The visible solution text."""
    reasoning: str | None
    """Separate reasoning text when the backend returns one (vLLM ``reasoning_content``/``reasoning``)."""
    prompt_tokens: int
    """Prompt tokens of the solve call."""
    completion_tokens: int
    """Completion tokens of the solve call (reasoning included)."""
    cached_tokens: int
    """Prompt tokens served from the server's prefix cache."""
    latency: float
    """Seconds the solve call took."""
    finish_reason: str | None
    """The server's finish reason (``length`` means the budget cut the reply)."""
    fallback: str | None
    """Fallbacks taken on this step, joined by '; ' (the difficulty one, ``budget_capped→N`` when the budget was
    shrunk to fit the context, ``context_full`` when nothing fitted), else None."""
    threshold: NotRequired[float]
    """Budget routing: the effective τ this step was routed by (see :class:`BudgetRouting`)."""
    from_sample: NotRequired[int | None]
    """``assess="agreement"``: the agreement sample reused as this System 1 solution (no new call; its tokens are
    counted under the ``assess`` stage), else None."""


class RoutePlan(TypedDict):
    """The run settings the graph's branches follow, copied from the Context into the state.

    Branch functions read only the state, so a state edit (Studio's "edit", ``update_state``), which runs them
    without a runtime, routes exactly as the run would: ``start`` writes the plan, ``route`` refreshes it from the
    Context of each run segment (a resume or fork with a new τ), and an edit may change it too.
    """

    candidates: int
    """k: decompositions to sample."""
    assess: str
    """The assessment policy (``upfront`` or ``contextual``)."""
    threshold: float
    """τ of Eq. 4."""


class BudgetRouting(TypedDict):
    """Routing under a token budget (``Context.token_budget``): the plan made at the latest routing decision.

    System 2 goes to the unsolved sub-problems in order of difficulty while the expected completion tokens of the
    whole problem stay within the budget; ``threshold`` is the τ that plan amounts to (Eq. 4 then routes by it).
    """

    token_budget: int
    """The per-problem target N."""
    threshold: float
    """The effective τ: the highest d left to System 1 (1.0 when none could get System 2 within the budget; -1.0
    when every known sub-problem gets it)."""
    spent: int
    """Completion tokens already spent (all stages) when the plan was made."""
    expected: float
    """Expected completion tokens of the whole problem under the plan."""
    costs: dict[str, float]
    """Expected completion tokens of one solve per mode, and of one assessment (``assess``) still to come."""
    sources: dict[str, str]
    """Where each cost came from: ``given`` (the Context), ``history`` (blended with this run's earlier steps),
    ``max_tokens`` (the mode's budget: nothing better known)."""
    system2: list[int]
    """The unsolved sub-problems (indexes) the plan gives System 2."""
    at_step: int
    """The sub-problem about to be solved when the plan was made."""


class InputState(TypedDict):
    """What a caller provides."""

    problem: str
    """The math problem P."""
    problem_id: NotRequired[str | None]
    """Optional id, carried into traces and results."""


RunStatus = Literal["completed", "budget_exhausted"]
"""``completed``: every sub-problem was solved. ``budget_exhausted``: a per-problem budget stopped the run early."""


class OutputState(TypedDict):
    """What a caller gets back."""

    preset: NotRequired[str]
    """The preset the run used (``auto`` resolved: ``prompted``, ``qwen3-hybrid`` or ``paired``)."""
    status: RunStatus
    """How the run ended."""
    stop_reason: str | None
    """Which budget stopped the run and at what value, when one did."""

    answer: str | None
    """Contents of the last ``\\boxed{}`` of the last solution, or None (see ``answer_fallback``)."""
    answer_fallback: str | None
    """Why there is no answer (e.g. ``no_boxed_answer``), else None."""
    subproblems: list[str]
    """The chosen decomposition s_1..s_n."""
    decomposition_fallback: str | None
    """Set when no candidate decomposition was valid and the whole problem was used as one sub-problem."""
    selection_fallback: str | None
    """Set when the model's choice among candidates could not be used and the first valid one was taken."""
    steps: list[StepResult]
    """Solved sub-problems in order."""
    usage: dict[str, Usage]
    """Model usage per stage (decompose, select, assess, solve)."""
    budget_routing: NotRequired[BudgetRouting | None]
    """Routing under a token budget: the latest plan and the effective τ it chose (None: routed by τ)."""


class State(InputState):
    """The internal state of the SCALE graph (a superset of ``OutputState``)."""

    decompositions: Annotated[list[Candidate], operator.add]
    """The k candidate decompositions gathered from the fan-out (append-only); ``Context.candidates`` is k."""
    subproblems: list[str]
    """The chosen decomposition s_1..s_n."""
    decomposition_fallback: str | None
    """Set when no candidate decomposition was valid."""
    selection_fallback: str | None
    """Set when the model's choice could not be used."""
    assessments: Annotated[dict[str, Assessment], merge_assessments]
    """Difficulty assessments by sub-problem index."""
    steps: Annotated[list[StepResult], operator.add]
    """Solved sub-problems; the Eq. 5 context is P plus these, in order (append-only)."""
    usage: Annotated[dict[str, Usage], add_usage]
    """Model usage per stage, summed by the reducer."""
    answer: str | None
    """The final answer, set by finalize."""
    answer_fallback: str | None
    """Why there is no answer, set by finalize."""
    started_at: float
    """Wall-clock start of the run (epoch seconds), for the time budget."""
    status: RunStatus
    """How the run ended (set by finalize; ``budget_exhausted`` earlier, by the route junction)."""
    stop_reason: str | None
    """Which budget stopped the run."""
    preset: str
    """The preset the run used (``auto`` resolved), set by start."""
    plan: RoutePlan
    """The settings the branches route by (k, assessment policy, τ), set by start and refreshed by route."""
    budget_routing: BudgetRouting | None
    """Routing under a token budget: the latest plan, refreshed by route at each decision (None: routed by τ)."""


class DecomposeTask(TypedDict):
    """The payload ``Send`` gives one decomposition sample."""

    problem: str
    problem_id: str | None
    index: int


class AssessTask(TypedDict):
    """The payload ``Send`` gives one difficulty assessment."""

    problem: str
    problem_id: str | None
    subproblems: list[str]
    index: int
    steps: list[StepResult]
    """Earlier solved steps (empty when assessing upfront)."""
    contextual: bool

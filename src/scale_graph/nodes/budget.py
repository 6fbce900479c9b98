"""Routing under a token budget (``Context.token_budget``, beyond the paper): the τ that spends the budget best.

Instead of a fixed τ, each routing decision plans the rest of the problem: every unsolved sub-problem starts on
System 1, then System 2 is given to the sub-problems in order of difficulty (the hardest first, equal d together)
while the expected completion tokens of the whole problem, what is spent so far plus the expected cost of the rest,
stay within the budget N. The plan amounts to a τ (the highest d left to System 1), which the route junction puts
in the run's plan, so Eq. 4 (``nodes/route.py: select_mode``) still routes every sub-problem, by that τ.

Expected costs per mode (:func:`expected_costs`) start from ``Context.system1_token_cost`` /
``system2_token_cost`` (e.g. measured by ``scale calibrate``), else from the mode's max tokens, and are blended
with this run's own history as its steps are solved: the prior counts as one observation beside the completion
tokens of each earlier step of that mode. Sub-problems not yet assessed (the contextual and agreement policies) are
planned on System 1 with the expected cost of their assessment, except the final question under
``final_step="question"``, whose d (0.9) is known ahead; under ``assess="agreement"`` a System 1 step reuses its
sample and costs nothing more. The plan is made again at every decision, so it adapts as the costs are learned.

Plain functions of the state and the Context: this module knows no graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from scale_graph.context import Context
from scale_graph.nodes.assess import FINAL_DIFFICULTY
from scale_graph.state import BudgetRouting, Mode, State

MODES: tuple[Mode, Mode] = ("system1", "system2")


def blend(prior: float, observed: list[int]) -> float:
    """The running mean of ``observed`` with ``prior`` counted as one more observation."""
    return (prior + sum(observed)) / (1 + len(observed))


def expected_costs(state: State, ctx: Context) -> tuple[dict[str, float], dict[str, str]]:
    """Expected completion tokens of one System 1 / System 2 solve and of one assessment still to come; and sources.

    A mode's prior is the Context's cost for it (``given``), else its max tokens (``max_tokens``); once the run has
    steps of that mode, the prior is blended with them (``history``). An assessment is expected to cost what this
    run's earlier ones did (under ``agreement`` with none yet: m System 1 solves; otherwise nothing).
    """
    steps = state.get("steps") or []
    costs: dict[str, float] = {}
    sources: dict[str, str] = {}
    for mode, given, max_tokens in (("system1", ctx.system1_token_cost, ctx.system1_max_tokens),
                                    ("system2", ctx.system2_token_cost, ctx.system2_max_tokens)):
        observed = [s["completion_tokens"] for s in steps if s["mode"] == mode]
        costs[mode] = blend(given if given is not None else float(max_tokens), observed)
        sources[mode] = "history" if observed else "given" if given is not None else "max_tokens"
    spent_on = [a["completion_tokens"] for a in (state.get("assessments") or {}).values() if a["completion_tokens"]]
    if spent_on:
        costs["assess"], sources["assess"] = fmean(spent_on), "history"
    else:
        costs["assess"] = ctx.agreement_samples * costs["system1"] if ctx.assess == "agreement" else 0.0
        sources["assess"] = sources["system1"] if ctx.assess == "agreement" else "none"
    return {k: round(v, 3) for k, v in costs.items()}, sources


@dataclass(frozen=True)
class Unsolved:
    """One sub-problem still to solve, as the plan sees it."""

    index: int
    difficulty: float | None
    """Its d, None when it is not assessed yet (planned on System 1)."""
    assess_cost: float
    """Expected tokens still to spend on assessing it."""
    fast_cost: float
    """Expected tokens of solving it on System 1 (0 when an agreement sample will be reused)."""
    deep_cost: float


def plan_modes(unsolved: list[Unsolved], spent: float, budget: float) -> tuple[float, list[int], float]:
    """The effective τ, the sub-problems given System 2, and the expected total of that plan.

    Everything starts on System 1; then each level of d, highest first, moves to System 2 if the expected total
    stays within ``budget``, and the first level that does not fit stops the plan (so the plan is a threshold: d
    above τ on System 2). τ is the highest d left on System 1; 1.0 when nothing is assessed, -1.0 when every
    assessed sub-problem fits on System 2.
    """
    expected = spent + sum(u.assess_cost + u.fast_cost for u in unsolved)
    levels = sorted({u.difficulty for u in unsolved if u.difficulty is not None}, reverse=True)
    deep: list[int] = []
    for level in levels:
        group = [u for u in unsolved if u.difficulty == level]
        extra = sum(u.deep_cost - u.fast_cost for u in group)
        if expected + extra > budget:
            return level, sorted(deep), expected
        expected += extra
        deep += [u.index for u in group]
    return (-1.0 if levels else 1.0), sorted(deep), expected


def budget_routing(state: State, ctx: Context) -> BudgetRouting | None:
    """The plan for the rest of the problem under ``ctx.token_budget``; None without a budget or nothing to route.

    A plan is made only when the next sub-problem has its difficulty (before a contextual assessment there is
    nothing to decide yet).
    """
    if ctx.token_budget is None:
        return None
    subproblems = state.get("subproblems") or []
    assessments = state.get("assessments") or {}
    first, n = len(state.get("steps") or []), len(subproblems)
    if first >= n or str(first) not in assessments:
        return None
    costs, sources = expected_costs(state, ctx)
    agreement = ctx.assess == "agreement"

    def unsolved(j: int) -> Unsolved:
        assessment = assessments.get(str(j))
        forced_final = ctx.final_step == "question" and j == n - 1
        samples_ahead = agreement and not forced_final  # an agreement assessment brings a System 1 solution
        if assessment is not None:
            reusable = bool(assessment.get("samples")) and assessment.get("modal") is not None
            return Unsolved(j, assessment["difficulty"], 0.0, 0.0 if reusable else costs["system1"],
                            costs["system2"])
        return Unsolved(j, FINAL_DIFFICULTY if forced_final else None,  # the final question's d is known ahead
                        0.0 if agreement and forced_final else costs["assess"],
                        0.0 if samples_ahead else costs["system1"], costs["system2"])

    spent = sum(u["completion_tokens"] for u in (state.get("usage") or {}).values())
    threshold, deep, expected = plan_modes([unsolved(j) for j in range(first, n)], spent, ctx.token_budget)
    return BudgetRouting(token_budget=ctx.token_budget, threshold=threshold, spent=spent,
                         expected=round(expected, 1), costs=costs, sources=sources, system2=deep, at_step=first)

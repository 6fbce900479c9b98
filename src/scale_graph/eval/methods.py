"""Every method by name: its compiled graph, the Context it runs with, and what its "unit" of work is.

``all-fast`` and ``all-deep`` are the SCALE graph with the threshold forced: τ = 1 sends every sub-problem to
System 1 (d ≤ 1 always), τ = -1 sends every one to System 2 (d ≥ 0 > τ). Everything else in their Context is
the caller's. The evaluation harness and the CLI look methods up here.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph

from scale_graph.baselines.context import BaselineContext
from scale_graph.context import Context

Unit = Literal["sub-problem", "sample", "round"]


@dataclass(frozen=True)
class Method:
    """One method the harness can run."""

    name: str
    description: str
    graph_ref: str
    """``module:attribute`` of this method's compiled graph."""
    unit: Unit
    """What Tpi divides by: sub-problems (SCALE family), samples (cot, majority) or rounds (inftythink)."""
    settings: tuple[str, ...]
    """The Context fields this method's result depends on (recorded with every result; runs that differ in one
    of them are different runs)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Context fields this method forces."""
    votes_on_samples: bool = False
    """True when the n samples are voted into one answer (``majority``), not graded one by one."""
    context_class: type[Context] = Context
    """The graph's context schema: ``Context`` for SCALE, ``BaselineContext`` for the baselines."""
    optional_settings: tuple[str, ...] = ()
    """Context fields this method's result depends on only in some runs: recorded when they apply
    (:data:`APPLIES`), so runs made before the field existed keep their identity (and resume)."""

    def optional_settings_of(self, ctx: Context) -> dict[str, Any]:
        """The :attr:`optional_settings` of ``ctx`` that apply to its run."""
        return {name: getattr(ctx, name) for name in self.optional_settings if APPLIES[name](ctx)}

    def graph(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The compiled graph (imported on first use, so naming a method compiles nothing else)."""
        module, attribute = self.graph_ref.split(":")
        graph: CompiledStateGraph[Any, Any, Any, Any] = getattr(importlib.import_module(module), attribute)
        return graph

    def context(self, ctx: Context) -> Context:
        """``ctx`` as this method's context class, with this method's forced fields.

        A baseline's own knobs keep their defaults unless ``ctx`` already has them.
        """
        if not isinstance(ctx, self.context_class):
            ctx = self.context_class(**self.context_class.own_fields(dataclasses.asdict(ctx)))
        return dataclasses.replace(ctx, **self.overrides) if self.overrides else ctx


_SCALE_GRAPH = "scale_graph.graph.scale:graph"

_MODEL = ("model", "system2_model", "preset", "temperature", "top_p", "top_k", "max_model_len")
_SCALE = (
    *_MODEL,
    "threshold",
    "candidates",
    "assess",
    "final_step",
    "system1_max_tokens",
    "system2_max_tokens",
    "control_max_tokens",
    "max_subproblems",
)
_SCALE_OPTIONAL = ("agreement_samples", "token_budget", "system1_token_cost", "system2_token_cost")
"""SCALE settings added after runs were recorded: the agreement assessor's m and budget routing."""

APPLIES: dict[str, Callable[[Context], bool]] = {
    "agreement_samples": lambda ctx: ctx.assess == "agreement",
    "token_budget": lambda ctx: ctx.token_budget is not None,
    "system1_token_cost": lambda ctx: ctx.token_budget is not None and ctx.system1_token_cost is not None,
    "system2_token_cost": lambda ctx: ctx.token_budget is not None and ctx.system2_token_cost is not None,
}
"""When an optional setting changes what a run does (and so is part of its identity)."""

METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "scale",
            "SCALE: decompose, assess, route each sub-problem by d > τ",
            _SCALE_GRAPH,
            "sub-problem",
            _SCALE,
            optional_settings=_SCALE_OPTIONAL,
        ),
        Method(
            "cot",
            "one System 2 call with the zero-shot chain-of-thought prompt",
            "scale_graph.baselines.graphs:cot",
            "sample",
            (*_MODEL, "system2_max_tokens"),
            context_class=BaselineContext,
        ),
        Method(
            "majority",
            "n System 2 samples, vote by mathematical equivalence",
            "scale_graph.baselines.graphs:majority",
            "sample",
            (*_MODEL, "system2_max_tokens", "samples"),
            votes_on_samples=True,
            context_class=BaselineContext,
        ),
        Method(
            "inftythink",
            "bounded reasoning rounds joined by summaries (training-free)",
            "scale_graph.baselines.graphs:inftythink",
            "round",
            (*_MODEL, "rounds", "round_max_tokens", "control_max_tokens"),
            context_class=BaselineContext,
        ),
        Method(
            "all-fast",
            "SCALE with every sub-problem on System 1 (τ = 1)",
            _SCALE_GRAPH,
            "sub-problem",
            _SCALE,
            {"threshold": 1.0},
            optional_settings=_SCALE_OPTIONAL,
        ),
        Method(
            "all-deep",
            "SCALE with every sub-problem on System 2 (τ = -1)",
            _SCALE_GRAPH,
            "sub-problem",
            _SCALE,
            {"threshold": -1.0},
            optional_settings=_SCALE_OPTIONAL,
        ),
    ]
}


def get_method(name: str) -> Method:
    """The method called ``name``, or ``KeyError`` naming the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None

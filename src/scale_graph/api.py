"""The Python API: solve a problem with SCALE from your own code, sync or async.

```python
from scale_graph import solve, Context
result = solve("What is 17 * 23?", context=Context(candidates=2))
print(result.answer, [s["mode"] for s in result.steps])
```

With no endpoint configured (``Context.base_url`` / ``$SCALE_BASE_URL``) the embedded model is started in this
process on first use and stopped at exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability, StreamMode

from scale_graph.context import Context
from scale_graph.local import embedded_endpoint
from scale_graph.models import check_endpoint
from scale_graph.state import STAGES, BudgetRouting, OutputState, RunStatus, StepResult, Usage

EventHandler = Callable[[dict[str, Any]], None]
"""Receives each custom progress event of a run."""

CompiledGraph = CompiledStateGraph[Any, Any, Any, Any]
"""Any of the project's compiled graphs (SCALE or a baseline), whatever its state types."""


@dataclass
class SolveResult:
    """A finished (or stopped) SCALE run."""

    answer: str | None
    answer_fallback: str | None
    subproblems: list[str]
    steps: list[StepResult]
    usage: dict[str, Usage]
    decomposition_fallback: str | None = None
    selection_fallback: str | None = None
    status: RunStatus = "completed"
    """``completed``, or ``budget_exhausted`` when a per-problem budget stopped the run (see ``stop_reason``)."""
    stop_reason: str | None = None
    thread_id: str | None = None
    preset: str | None = None
    """The preset the run used (``auto`` resolved)."""
    budget_routing: BudgetRouting | None = None
    """Under a token budget: the last routing plan, with the effective τ it chose (None: routed by τ)."""

    @classmethod
    def from_state(cls, state: dict[str, Any], thread_id: str | None = None) -> SolveResult:
        """Build from a graph's output (or full) state."""
        return cls(
            answer=state.get("answer"),
            answer_fallback=state.get("answer_fallback"),
            subproblems=list(state.get("subproblems") or []),
            steps=list(state.get("steps") or []),
            usage=dict(state.get("usage") or {}),
            decomposition_fallback=state.get("decomposition_fallback"),
            selection_fallback=state.get("selection_fallback"),
            status=state.get("status") or "completed",
            stop_reason=state.get("stop_reason"),
            thread_id=thread_id,
            preset=state.get("preset"),
            budget_routing=state.get("budget_routing"),
        )

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over all stages (the paper's Tok)."""
        return sum(u["completion_tokens"] for u in self.usage.values())

    @property
    def hard_share(self) -> float:
        """Share of sub-problems routed to System 2 (the paper's Hard%)."""
        return sum(s["mode"] == "system2" for s in self.steps) / len(self.steps) if self.steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The output schema plus totals, as plain JSON-ready data."""
        out: OutputState = {
            "status": self.status, "stop_reason": self.stop_reason,
            "preset": self.preset or "",
            "answer": self.answer, "answer_fallback": self.answer_fallback, "subproblems": self.subproblems,
            "decomposition_fallback": self.decomposition_fallback,
            "selection_fallback": self.selection_fallback, "steps": self.steps,
            "usage": {s: self.usage[s] for s in STAGES if s in self.usage},
        }
        if self.budget_routing is not None:
            out["budget_routing"] = self.budget_routing
        return {**out, "thread_id": self.thread_id, "completion_tokens": self.completion_tokens,
                "hard_share": self.hard_share}


@contextmanager
def endpoint(context: Context, *, model_path: str | None = None,
             progress: Callable[[str], None] | None = None, slots: int | None = None) -> Iterator[Context]:
    """``context`` with a live endpoint: as given, or the embedded model started for the block and stopped after.

    ``slots``: the embedded model decodes at least this many requests at once (default: its own default).

    Fails fast with :class:`~scale_graph.models.EndpointError` (naming the URL) when a configured endpoint does
    not answer.
    """
    if context.base_url:
        check_endpoint(context.base_url, context.api_key)
        yield context
        return
    with embedded_endpoint(context, model_path=model_path, slots=slots, progress=progress) as live:
        yield live


MAX_PARALLEL_TASKS = 64
"""Tasks of one run LangGraph may run at once (``max_concurrency``). The sync API needs it: there each task holds a
worker thread, and LangGraph's default pool, min(32, CPUs + 4), is 6 on a 2-core machine and would quietly throttle
k = 8 decompositions. Under the async API it only bounds one run's fan-out, never the calls of concurrent runs. The
real cap on requests is ``max_concurrent_requests``."""


def run_config(*, thread_id: str | None = None, checkpoint_id: str | None = None, **extra: Any) -> RunnableConfig:
    """The config of one run: its thread and checkpoint, room for fan-outs, and ``extra``.

    ``thread_id`` (and ``checkpoint_id``, to start from one) when checkpointing; ``extra``: ``metadata``, ``tags``,
    ``run_name``.

    The recursion limit SCALE needs travels with the compiled graph (:func:`~scale_graph.graph.scale.
    compile_scale_graph`), so every caller, Studio and the servers included, gets it.
    """
    configurable: dict[str, Any] = {"thread_id": thread_id} if thread_id else {}
    if checkpoint_id:
        configurable.update(checkpoint_id=checkpoint_id, checkpoint_ns="")
    config: RunnableConfig = {"configurable": configurable, "max_concurrency": MAX_PARALLEL_TASKS}
    return cast(RunnableConfig, {**config, **extra})  # extra: RunnableConfig keys (metadata, tags, run_name)


def _graph(graph: CompiledGraph | None) -> CompiledGraph:
    if graph is not None:
        return graph
    from scale_graph.graph.scale import graph as scale_graph  # noqa: PLC0415 - compiled on first use, not on import

    return scale_graph


class _Run:
    """What one streamed run yields: the last state values, with custom progress events passed on."""

    MODES: ClassVar[list[StreamMode]] = ["custom", "values"]

    def __init__(self, on_event: EventHandler | None) -> None:
        self.on_event = on_event
        self.final: dict[str, Any] = {}

    def take(self, mode: str, chunk: Any) -> None:
        if mode == "custom" and self.on_event:
            self.on_event(chunk)
        elif mode == "values":
            self.final = chunk


def stream_run(graph: CompiledGraph, graph_input: dict[str, Any] | None, *, config: RunnableConfig,
               context: Context, on_event: EventHandler | None = None,
               durability: Durability | None = None) -> dict[str, Any]:
    """Run ``graph`` once and return its last state values; custom progress events go to ``on_event``.

    ``graph_input=None`` continues the thread in ``config`` from its latest checkpoint (or from the
    ``checkpoint_id`` it names).
    """
    run = _Run(on_event)
    for mode, chunk in graph.stream(graph_input, config=config, context=context,
                                    stream_mode=run.MODES, durability=durability):
        run.take(mode, chunk)
    return run.final


async def astream_run(graph: CompiledGraph, graph_input: dict[str, Any] | None, *, config: RunnableConfig,
                      context: Context, on_event: EventHandler | None = None,
                      durability: Durability | None = None) -> dict[str, Any]:
    """The async twin of :func:`stream_run`."""
    run = _Run(on_event)
    async for mode, chunk in graph.astream(graph_input, config=config, context=context,
                                           stream_mode=run.MODES, durability=durability):
        run.take(mode, chunk)
    return run.final


def solve(problem: str, *, context: Context | None = None, problem_id: str | None = None,
          on_event: EventHandler | None = None, graph: CompiledGraph | None = None,
          thread_id: str | None = None) -> SolveResult:
    """Solve ``problem`` with SCALE and return the typed result.

    ``on_event`` receives each progress event (decomposition chosen, sub-problem scored, step solved, answer).
    ``graph`` lets you pass a graph compiled with your checkpointer (``compile_scale_graph(checkpointer=…)``);
    then give a ``thread_id``. An unusable problem raises :class:`~scale_graph.context.InvalidProblem` from the
    graph's first node, before any model call.
    """
    final = stream_run(_graph(graph), {"problem": problem, "problem_id": problem_id},
                       config=run_config(thread_id=thread_id), context=context or Context(), on_event=on_event)
    return SolveResult.from_state(final, thread_id)


async def asolve(problem: str, *, context: Context | None = None, problem_id: str | None = None,
                 on_event: EventHandler | None = None, graph: CompiledGraph | None = None,
                 thread_id: str | None = None) -> SolveResult:
    """The async twin of :func:`solve`."""
    final = await astream_run(_graph(graph), {"problem": problem, "problem_id": problem_id},
                              config=run_config(thread_id=thread_id), context=context or Context(),
                              on_event=on_event)
    return SolveResult.from_state(final, thread_id)

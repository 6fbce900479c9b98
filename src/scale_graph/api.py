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
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability

from scale_graph.context import Context, check_problem
from scale_graph.local import embedded_endpoint
from scale_graph.models import check_endpoint
from scale_graph.state import STAGES, OutputState, StepResult, Usage

EventHandler = Callable[[dict[str, Any]], None]


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
    status: str = "completed"
    """``completed``, or ``budget_exhausted`` when a per-problem budget stopped the run (see ``stop_reason``)."""
    stop_reason: str | None = None
    thread_id: str | None = None
    preset: str | None = None
    """The preset the run used (``auto`` resolved)."""

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
            "status": self.status, "stop_reason": self.stop_reason,  # type: ignore[typeddict-item]
            "preset": self.preset or "",
            "answer": self.answer, "answer_fallback": self.answer_fallback, "subproblems": self.subproblems,
            "decomposition_fallback": self.decomposition_fallback,
            "selection_fallback": self.selection_fallback, "steps": self.steps,
            "usage": {s: self.usage[s] for s in STAGES if s in self.usage},
        }
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


def run_config(thread_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A run config with a thread id (when checkpointing), the recursion limit SCALE needs, and room for fan-outs."""
    from scale_graph.graph.policies import RECURSION_LIMIT

    configurable = {"thread_id": thread_id} if thread_id else {}
    return {"configurable": configurable, "recursion_limit": RECURSION_LIMIT, "max_concurrency": MAX_PARALLEL_TASKS,
            **extra}


def _graph(graph: CompiledStateGraph | None) -> CompiledStateGraph:
    if graph is not None:
        return graph
    from scale_graph.graph.scale import graph as scale_graph

    return scale_graph


def solve(problem: str, *, context: Context | None = None, problem_id: str | None = None,
          on_event: EventHandler | None = None, graph: CompiledStateGraph | None = None,
          thread_id: str | None = None) -> SolveResult:
    """Solve ``problem`` with SCALE and return the typed result.

    ``on_event`` receives each progress event (decomposition chosen, sub-problem scored, step solved, answer).
    ``graph`` lets you pass a graph compiled with your checkpointer; then give a ``thread_id``.
    """
    text = check_problem(problem)
    final = run_graph(_graph(graph), {"problem": text, "problem_id": problem_id}, config=run_config(thread_id),
                      context=context or Context(), on_event=on_event)
    return SolveResult.from_state(final, thread_id)


def run_graph(graph: CompiledStateGraph, graph_input: dict[str, Any] | None, *, config: dict[str, Any],
              context: Context, on_event: EventHandler | None = None,
              durability: Durability | None = None) -> dict[str, Any]:
    """Stream one run of ``graph`` and return its last state values.

    ``graph_input=None`` continues the thread in ``config`` from its latest checkpoint (or from the
    ``checkpoint_id`` it names). Custom progress events go to ``on_event``.
    """
    final: dict[str, Any] = {}
    for mode, chunk in graph.stream(
        graph_input, config=config, context=context, stream_mode=["custom", "values"],  # type: ignore[arg-type]
        durability=durability,
    ):
        if mode == "custom" and on_event:
            on_event(chunk)
        elif mode == "values":
            final = chunk
    return final


async def asolve(problem: str, *, context: Context | None = None, problem_id: str | None = None,
                 on_event: EventHandler | None = None, graph: CompiledStateGraph | None = None,
                 thread_id: str | None = None) -> SolveResult:
    """The async twin of :func:`solve`."""
    text = check_problem(problem)
    final: dict[str, Any] = {}
    async for mode, chunk in _graph(graph).astream(
        {"problem": text, "problem_id": problem_id}, config=run_config(thread_id),  # type: ignore[arg-type]
        context=context or Context(), stream_mode=["custom", "values"],
    ):
        if mode == "custom" and on_event:
            on_event(chunk)
        elif mode == "values":
            final = chunk
    return SolveResult.from_state(final, thread_id)

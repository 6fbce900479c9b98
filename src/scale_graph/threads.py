"""Durable SCALE threads: each run is a thread in a checkpointer; list, inspect, resume, replay and fork them.

Every function takes the SCALE graph compiled with a checkpointer (:func:`open_thread_graph`). Runs use
durability ``"sync"`` (:data:`scale_graph.checkpoint.DURABILITY`), so a killed process keeps every finished step
and :func:`resume` asks the model only for the steps that had not finished.

One run at a time per thread: every run (:func:`start`, :func:`resume`, :func:`replay`, the run :func:`fork` starts
after writing its branch) holds the thread's run lock (:func:`running`), so a second run of the same thread, from any
process sharing the store, is refused with :class:`ThreadBusy` naming the process that holds it. A caller can hold it
around more (the CLI holds it around the whole command, a fork's branch included).

The run's :class:`~scale_graph.context.Context` is not graph state, so it is kept in each checkpoint's metadata
(``scale_context``, JSON, never the API key): a resumed, replayed or forked run continues with the settings it
was started with, except those the caller overrides.

```python
with open_thread_graph() as graph:              # $SCALE_HOME/threads.sqlite
    result = start(graph, "What is 17 * 23?", context=Context(candidates=2), thread_id="t1")
    # ... the process dies mid-run; later, in a new process:
    result = resume(graph, "t1")
```

With no endpoint configured, each run starts the embedded model for its duration (as ``scale solve`` does).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import StateSnapshot

from scale_graph.api import CompiledGraph, EventHandler, SolveResult, endpoint, run_config, stream_run
from scale_graph.checkpoint import DURABILITY, ThreadLocked, latest_thread_ids, open_checkpointer, thread_lock
from scale_graph.context import Context
from scale_graph.graph.scale import compile_scale_graph
from scale_graph.state import Assessment

CONTEXT_KEY = "scale_context"
"""Checkpoint-metadata key holding the run's Context as JSON (without ``api_key``)."""
FORK_KEY = "scale_fork"
"""Checkpoint-metadata key describing the change a fork made."""
SECRET_FIELDS = frozenset({"api_key"})
"""Context fields never written to a checkpoint."""
REROUTABLE = frozenset({"route", "solve_fast", "solve_deep", "finalize"})
"""Pending tasks a fork can start from: the decomposition is chosen and the pending assessments are done."""

ThreadStatus = Literal["done", "error", "incomplete"]
"""``done``: the run finished (``finalize`` wrote its status, and every step is checkpointed). ``error``: a step
failed (see ``error``). ``incomplete``: stopped mid-run (interrupted, killed, or still running in another process);
``resume`` continues it."""


class ThreadError(ValueError):
    """A thread operation that cannot be done as asked (unknown thread or checkpoint, nothing to resume, ...)."""


class ThreadBusy(ThreadError):
    """Another run (in this or another process) holds the thread: the message names its process."""

    def __init__(self, locked: ThreadLocked) -> None:
        super().__init__(f"{locked}; wait for it to finish, or stop it, then run the command again "
                         f"(`scale show {locked.thread_id}` shows its progress)")
        self.holder = locked.holder


class ThreadFinished(ThreadError):
    """:func:`resume` of a thread whose run has finished: nothing to run; ``result`` is the finished run's."""

    def __init__(self, thread_id: str, result: SolveResult) -> None:
        super().__init__(f"thread {thread_id} has finished: nothing to resume (`scale show {thread_id}`)")
        self.result = result


@dataclass
class ThreadInfo:
    """One thread at its latest checkpoint."""

    thread_id: str
    status: ThreadStatus
    problem: str
    steps_done: int
    steps_total: int | None
    """Sub-problems in the chosen decomposition (None before it is chosen)."""
    answer: str | None
    updated_at: str | None
    next: tuple[str, ...]
    """Nodes that run next (empty when done)."""
    error: str | None


@dataclass
class CheckpointInfo:
    """One checkpoint of a thread, with what wrote it."""

    checkpoint_id: str
    parent_id: str | None
    step: int
    source: str
    """``input`` (the problem arrived), ``loop`` (nodes ran), ``update`` (a fork changed the state)."""
    writers: list[str]
    """The nodes whose results this checkpoint holds, e.g. ``["decompose ×8"]``."""
    next: tuple[str, ...]
    steps_done: int
    created_at: str | None
    note: str | None
    """For a fork: what was changed."""


@contextmanager
def open_thread_graph(target: str | None = None) -> Iterator[CompiledGraph]:
    """The SCALE graph compiled with the checkpointer of ``target`` (see :mod:`scale_graph.checkpoint`)."""
    with open_checkpointer(target) as saver:
        yield compile_scale_graph(checkpointer=saver)


def new_thread_id() -> str:
    """A fresh thread id."""
    return str(uuid.uuid4())


# --- reading -------------------------------------------------------------------------------------------------


def thread_config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    """The config addressing a thread (its latest checkpoint, or ``checkpoint_id``)."""
    configurable = {"thread_id": thread_id, **({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}
    return {"configurable": configurable}


def exists(graph: CompiledGraph, thread_id: str) -> bool:
    """True when the thread has at least one checkpoint."""
    return graph.get_state(thread_config(thread_id)).created_at is not None


def snapshot(graph: CompiledGraph, thread_id: str, checkpoint_id: str | None = None) -> StateSnapshot:
    """The thread's state at its latest checkpoint (or ``checkpoint_id``); :class:`ThreadError` if none."""
    snap = graph.get_state(thread_config(thread_id, checkpoint_id))
    if snap.created_at is None:
        where = f"checkpoint {checkpoint_id} of thread {thread_id}" if checkpoint_id else f"thread {thread_id}"
        raise ThreadError(f"no {where}: `scale threads` lists the threads, `scale history THREAD` the checkpoints")
    return snap


def status_of(snap: StateSnapshot) -> ThreadStatus:
    """``done``, ``error`` or ``incomplete`` (see :data:`ThreadStatus`).

    ``snap.next`` alone cannot tell: it leaves out the tasks that finished, so a run stopped after its last task's
    results were saved but before the checkpoint that takes them in (Ctrl-C, ``kill -9``) shows no next node.
    Done means the latest checkpoint has no task at all, run or not, and ``finalize`` wrote the run's status.
    """
    if error_of(snap):
        return "error"
    return "done" if not snap.tasks and snap.values.get("status") else "incomplete"


def error_of(snap: StateSnapshot) -> str | None:
    """The error a pending task recorded, if any."""
    return next((str(t.error) for t in snap.tasks if t.error), None)


def info(graph: CompiledGraph, thread_id: str) -> ThreadInfo:
    """A thread's summary at its latest checkpoint."""
    snap = snapshot(graph, thread_id)
    values = snap.values
    subproblems = values.get("subproblems")
    return ThreadInfo(
        thread_id=thread_id,
        status=status_of(snap),
        problem=values.get("problem", ""),
        steps_done=len(values.get("steps") or []),
        steps_total=len(subproblems) if subproblems else None,
        answer=values.get("answer"),
        updated_at=snap.created_at,
        next=tuple(snap.next),
        error=error_of(snap),
    )


def list_threads(graph: CompiledGraph, limit: int = 50) -> list[ThreadInfo]:
    """The most recently written threads first."""
    return [info(graph, thread_id) for thread_id in latest_thread_ids(_saver(graph), limit)]


def _saver(graph: CompiledGraph) -> BaseCheckpointSaver[str]:
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise ThreadError("the graph has no checkpointer: compile it with one (open_thread_graph)")
    return saver


def history(graph: CompiledGraph, thread_id: str) -> list[CheckpointInfo]:
    """Every checkpoint of the thread, newest first (forks included), with the nodes that wrote each."""
    snaps = list(graph.get_state_history(thread_config(thread_id)))
    if not snaps:
        raise ThreadError(f"no thread {thread_id}: `scale threads` lists the threads")
    by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snaps}
    return [_checkpoint_info(s, by_id) for s in snaps]


def _checkpoint_info(snap: StateSnapshot, by_id: Mapping[str, StateSnapshot]) -> CheckpointInfo:
    metadata: Mapping[str, Any] = snap.metadata or {}
    parent_id = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    source = str(metadata.get("source", "?"))
    parent = by_id.get(parent_id) if source == "loop" and parent_id else None
    writers = counted(t.name for t in parent.tasks) if parent else [source]
    return CheckpointInfo(
        checkpoint_id=snap.config["configurable"]["checkpoint_id"],
        parent_id=parent_id,
        step=int(metadata.get("step", -1)),
        source=source,
        writers=writers,
        next=tuple(snap.next),
        steps_done=len(snap.values.get("steps") or []),
        created_at=snap.created_at,
        note=str(metadata[FORK_KEY]) if metadata.get(FORK_KEY) else None,
    )


def counted(names: Iterable[str]) -> list[str]:
    """Names with repeats folded, in first-seen order: ``assess, assess, route`` → ``["assess ×2", "route"]``."""
    return [name if n == 1 else f"{name} ×{n}" for name, n in Counter(names).items()]


def find_checkpoint(graph: CompiledGraph, thread_id: str, ref: str) -> str:
    """The full id of the thread's checkpoint ``ref`` (a full id or a unique prefix of one)."""
    ids = [c.checkpoint_id for c in history(graph, thread_id)]
    if ref in ids:
        return ref
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    reason = "is ambiguous" if matches else "does not exist"
    raise ThreadError(f"checkpoint {ref} {reason} in thread {thread_id}: `scale history {thread_id}` lists them")


def recorded_context(graph: CompiledGraph, thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The Context fields the thread's run was started with (as stored at that checkpoint)."""
    raw = (snapshot(graph, thread_id, checkpoint_id).metadata or {}).get(CONTEXT_KEY)
    return dict(json.loads(str(raw))) if raw else {}


def context_with(recorded: Mapping[str, Any], overrides: Mapping[str, Any]) -> Context:
    """A Context from the recorded settings with ``overrides`` applied (unknown stored fields are ignored)."""
    return Context(**Context.own_fields({**recorded, **overrides}))


# --- running -------------------------------------------------------------------------------------------------


class RunOptions(TypedDict, total=False):
    """How a run reports and where it finds a model when no endpoint is configured."""

    on_event: EventHandler | None
    """Receives the graph's progress events (candidate, decomposition, assessed, solving, solved, answer)."""
    progress: Callable[[str], None] | None
    """Receives human-readable notes: the endpoint in use, the embedded model starting."""
    model_path: str | None
    """The GGUF the embedded model serves when the Context names no endpoint (default: the packaged model)."""


def _metadata(context: Context, note: str | None = None) -> dict[str, Any]:
    stored = {k: v for k, v in asdict(context).items() if k not in SECRET_FIELDS}
    return {CONTEXT_KEY: json.dumps(stored), **({FORK_KEY: note} if note else {})}


@contextmanager
def running(graph: CompiledGraph, thread_id: str) -> Iterator[None]:
    """Hold the thread's run lock for the block (:func:`scale_graph.checkpoint.thread_lock`).

    :class:`ThreadBusy` when another run holds it. Re-entrant in this Python thread, so a caller may hold it around
    several steps (a check, then a run) that take it again.
    """
    with ExitStack() as held:
        try:
            held.enter_context(thread_lock(_saver(graph), thread_id))
        except ThreadLocked as exc:
            raise ThreadBusy(exc) from None
        yield


def _run(graph: CompiledGraph, thread_id: str, graph_input: dict[str, Any] | None, context: Context,
         options: RunOptions, checkpoint_id: str | None = None) -> SolveResult:
    """Run on the thread with a live endpoint; ``context`` (not the live one) is what the checkpoints record."""
    progress = options.get("progress")
    with running(graph, thread_id), endpoint(context, model_path=options.get("model_path"),
                                             progress=progress) as live:
        if progress:
            progress(f"thread {thread_id}; model endpoint {live.base_url}; τ={live.threshold}, "
                     f"k={live.candidates}, assess={live.assess}, preset={live.preset}")
        config = run_config(thread_id=thread_id, checkpoint_id=checkpoint_id, metadata=_metadata(context))
        final = stream_run(graph, graph_input, config=config, context=live, on_event=options.get("on_event"),
                           durability=DURABILITY)
    return SolveResult.from_state(final, thread_id)


def start(graph: CompiledGraph, problem: str, *, context: Context | None = None, thread_id: str | None = None,
          problem_id: str | None = None, **options: Unpack[RunOptions]) -> SolveResult:
    """Solve ``problem`` as a new thread (``thread_id``, default a fresh id)."""
    thread_id = thread_id or new_thread_id()
    with running(graph, thread_id):
        if exists(graph, thread_id):
            raise ThreadError(f"thread {thread_id} already exists: continue it with `scale resume`, branch it "
                              "with `scale fork`, or start a new one")
        return _run(graph, thread_id, {"problem": problem, "problem_id": problem_id}, context or Context(),
                    options)


def resume(graph: CompiledGraph, thread_id: str, *, overrides: Mapping[str, Any] | None = None,
           **options: Unpack[RunOptions]) -> SolveResult:
    """Continue an interrupted or failed run from its latest checkpoint; finished steps are not asked again.

    The run keeps the Context it was started with; ``overrides`` changes fields (e.g. a moved ``base_url``).
    :class:`ThreadFinished` (with the finished run's result) when there is nothing left to run.
    """
    with running(graph, thread_id):
        snap = snapshot(graph, thread_id)
        if status_of(snap) == "done":
            raise ThreadFinished(thread_id, SolveResult.from_state(snap.values, thread_id))
        if not snap.tasks:  # ended without finalize's status: not a SCALE run's end, and resuming runs nothing
            raise ThreadError(f"thread {thread_id} has no step left to run at its latest checkpoint but no finished "
                              f"run either: `scale history {thread_id}` lists its checkpoints to replay or fork")
        context = context_with(recorded_context(graph, thread_id), overrides or {})
        return _run(graph, thread_id, None, context, options)


def replay(graph: CompiledGraph, thread_id: str, checkpoint_id: str, *,
           overrides: Mapping[str, Any] | None = None, **options: Unpack[RunOptions]) -> SolveResult:
    """Run again from checkpoint ``checkpoint_id``: the steps after it are redone, on a new branch."""
    with running(graph, thread_id):
        context = context_with(recorded_context(graph, thread_id, checkpoint_id), overrides or {})
        return _run(graph, thread_id, None, context, options, checkpoint_id=checkpoint_id)


def fork(graph: CompiledGraph, thread_id: str, checkpoint_id: str, *,
         difficulties: Mapping[int, float] | None = None, overrides: Mapping[str, Any] | None = None,
         **options: Unpack[RunOptions]) -> SolveResult:
    """Branch the thread at ``checkpoint_id`` with changed difficulties and/or Context (e.g. τ), and continue.

    ``difficulties`` maps sub-problem numbers (1-based, as shown) to a new d in [0, 1]. The change is written as
    if the assessment stage had produced it, so the router decides every sub-problem not yet solved again, under
    the recorded Context with ``overrides`` (Eq. 4 with its τ). The checkpoint must lie in the solve loop: after
    the decomposition and its pending assessments, before the changed sub-problems were solved.
    """
    with running(graph, thread_id):  # the edit and the run it starts: no other process runs the thread between
        snap = snapshot(graph, thread_id, checkpoint_id)
        update = _difficulty_update(snap, checkpoint_id, difficulties or {})
        context = context_with(recorded_context(graph, thread_id, checkpoint_id), overrides or {})
        changes = [f"d{n}={d:g}" for n, d in sorted((difficulties or {}).items())] + [f"τ={context.threshold:g}"]
        note = f"fork of {checkpoint_id}: {', '.join(changes)}"
        config = run_config(thread_id=thread_id, checkpoint_id=checkpoint_id, metadata=_metadata(context, note))
        forked = graph.update_state(config, update or None, as_node="assess")
        return _run(graph, thread_id, None, context, options,
                    checkpoint_id=forked["configurable"]["checkpoint_id"])


def _difficulty_update(snap: StateSnapshot, checkpoint_id: str,
                       difficulties: Mapping[int, float]) -> dict[str, Any]:
    """The state update setting ``difficulties``, or :class:`ThreadError` when the fork cannot re-route."""
    values = snap.values
    subproblems, done = values.get("subproblems") or [], len(values.get("steps") or [])
    if not subproblems or not set(snap.next) <= REROUTABLE:
        raise ThreadError(f"checkpoint {checkpoint_id} is before the solve loop (next: {', '.join(snap.next)}); "
                          "fork from a checkpoint whose next step is route or a solve (`scale history`), or "
                          "use `scale replay` to redo earlier stages")
    if done >= len(subproblems):
        raise ThreadError(f"every sub-problem was solved at checkpoint {checkpoint_id}: nothing left to re-route")
    assessments: dict[str, Assessment] = {}
    for number, difficulty in difficulties.items():
        if not 1 <= number <= len(subproblems):
            raise ThreadError(f"there is no sub-problem {number}: the decomposition has {len(subproblems)}")
        if number <= done:
            raise ThreadError(f"sub-problem {number} was already solved at checkpoint {checkpoint_id}; fork from "
                              "an earlier checkpoint")
        if not 0.0 <= difficulty <= 1.0:
            raise ThreadError(f"a difficulty must lie in [0, 1], got {difficulty}")
        old = (values.get("assessments") or {}).get(str(number - 1))
        assessments[str(number - 1)] = Assessment(
            index=number - 1, difficulty=difficulty, assessed=old.get("assessed") if old else None,
            forced=f"fork→d={difficulty:g}", fallback=None, contextual=bool(old and old["contextual"]),
            completion_tokens=old["completion_tokens"] if old else 0)
    return {"assessments": assessments} if assessments else {}

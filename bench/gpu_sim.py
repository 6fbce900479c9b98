"""A GPU-like model server for the benchmarks: vLLM serving Qwen3-32B on one H100, simulated on a CPU.

:class:`SimulatedGPUServer` is :class:`scale_graph.testing.FakeVLLMServer` (Qwen3 thinking, ``/tokenize``,
``max_model_len``, vLLM's error bodies) whose replies take the time a continuous-batching server would take. The
time comes from one shared :class:`Engine` that sees every request in flight, as vLLM's scheduler does:

- **admission**: a request waits until fewer than ``max_num_seqs`` sequences run and its KV cache footprint
  (uncached prompt + reply) fits in what is left of the KV cache (``kv_capacity``);
- **prefill**: its prompt tokens not found in the **prefix cache** (hashes of 16-token blocks chained from the
  start of the prompt, shared by all requests, LRU within the KV capacity) are computed in chunks of at most
  ``max_num_batched_tokens`` per engine step, beside the running decodes (chunked prefill);
- **decode**: every running sequence gains one token per engine step. A step takes
  ``overhead + max(weights / bandwidth, tokens in the step × FLOPs per token / compute) + KV read``: reading the
  weights once per step is what batching shares, so the per-token time grows slowly with the batch, until the
  step becomes compute-bound or the sequences' KV cache (the attention reads, growing with every token of
  context) dominates.

The engine is a discrete-event simulation in *virtual* seconds (:class:`Engine` has no clock and no threads: the
unit tests and :func:`replay_ideal` drive it directly). The server couples it to the wall clock with a ``speed``
factor: ``speed=100`` runs 100 simulated seconds per real second. Every figure it reports is in simulated
seconds.

What it answers (:class:`Workload`): every SCALE stage, with the lengths of a :class:`LengthProfile` — long
thinking for System 2, short answers for System 1, short JSON for the control calls — drawn deterministically
from the problem, the stage and the step (two runs of a problem get the same lengths), or the token counts of real
runs replayed from a results file (``--replay docs/performance/frontier-50/gsm8k_dev__scale__0dd2589b.jsonl``).

    python bench/gpu_sim.py --speed 100 [--profile aime] [--replay FILE] [--kv-capacity 0]

prints ``gpu-sim: http://127.0.0.1:PORT/v1`` and serves until interrupted. ``POST /sim/stats`` returns the
engine's counters and a log of every request; ``POST /sim/reset`` clears them and the prefix cache.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import re
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts src/ on sys.path when run from a checkout)

from scale_graph.testing import (
    FakeVLLMServer,
    Reply,
    current_subproblem,
    earlier_solutions,
    prompt_token_ids,
    serve_until_interrupted,
    stage_of,
    thinking_flag,
)

# --- the GPU: H100 SXM 80 GB serving Qwen3-32B-FP8 with vLLM ---------------------------------------------------


@dataclass(frozen=True)
class GPUParams:
    """One GPU serving one dense model with vLLM. Defaults: H100 SXM 80 GB, Qwen3-32B with FP8 weights, BF16 KV.

    Sources (docs/performance.md, "Simulated GPU server", has the derivation and the sensitivity):
    H100 SXM: 3.35 TB/s HBM3, 1,979 TFLOPS dense FP8 (NVIDIA's H100 datasheet). Qwen3-32B: 32.8 B parameters,
    64 layers, 8 KV heads of dimension 128 (its model card / config.json), so 2 × 64 × 8 × 128 × 2 bytes =
    256 KiB of BF16 KV cache per token. ``activation_reserve`` is fitted so that this memory model gives the KV
    capacities measured for Qwen3-32B on one H100 80 GB with vLLM (17K tokens with BF16 weights, 193K with
    GPTQ-Int4); with FP8 weights it gives ~142K tokens. Assumptions (not measured for this model):
    ``bandwidth_efficiency`` 0.8, ``mfu`` 0.5, ``step_overhead`` 1 ms.
    """

    weight_bytes: float = 32.8e9
    """Bytes of weights read once per engine step (FP8: one byte per parameter)."""
    flops_per_token: float = 2 * 32.8e9
    """Forward FLOPs per token (2 × parameters)."""
    hbm_bandwidth: float = 3.35e12
    bandwidth_efficiency: float = 0.8
    peak_flops: float = 1979e12
    mfu: float = 0.5
    kv_bytes_per_token: int = 2 * 64 * 8 * 128 * 2
    step_overhead: float = 0.001
    """Seconds per engine step outside the GPU kernels (scheduling, sampling, launch)."""
    gpu_memory: float = 80 * 2**30
    gpu_memory_utilization: float = 0.9
    activation_reserve: float = 7.3e9
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    kv_capacity: int | None = None
    """KV cache size in tokens; None: from the memory model above; 0: unbounded (an idealised, larger server)."""

    def kv_tokens(self) -> int | None:
        """The KV cache capacity in tokens (None: unbounded)."""
        if self.kv_capacity is not None:
            return self.kv_capacity or None
        free = self.gpu_memory * self.gpu_memory_utilization - self.weight_bytes - self.activation_reserve
        return max(int(free // self.kv_bytes_per_token), self.block_size)

    def step_seconds(self, batch: int, prefill_tokens: int, context_tokens: float) -> float:
        """One engine step: ``batch`` decoding sequences holding ``context_tokens`` of KV cache, plus a prefill
        chunk of ``prefill_tokens``."""
        bandwidth = self.hbm_bandwidth * self.bandwidth_efficiency
        weights = self.weight_bytes / bandwidth
        compute = (batch + prefill_tokens) * self.flops_per_token / (self.peak_flops * self.mfu)
        return self.step_overhead + max(weights, compute) + context_tokens * self.kv_bytes_per_token / bandwidth

    def describe(self) -> str:
        """One line with the figures that drive the timing."""
        kv = self.kv_tokens()
        return (f"decode {self.step_seconds(1, 0, 1000) * 1000:.1f} ms/token alone (1K context), "
                f"{self.step_seconds(64, 0, 64 * 1000) * 1000:.1f} ms/step at 64 × 1K, "
                f"{self.step_seconds(256, 0, 256 * 1000) * 1000:.1f} ms/step at 256 × 1K; prefill "
                f"{self.peak_flops * self.mfu / self.flops_per_token:,.0f} tok/s; KV cache "
                f"{f'{kv:,} tokens' if kv else 'unbounded'}; max_num_seqs {self.max_num_seqs}")


# --- the engine: continuous batching in virtual time --------------------------------------------------------------


class PrefixCache:
    """vLLM's automatic prefix caching: 16-token blocks keyed by a hash chained from the prompt's start, LRU."""

    def __init__(self, block_size: int, capacity_blocks: int | None) -> None:
        self.block_size = block_size
        self.capacity = capacity_blocks
        self.blocks: collections.OrderedDict[int, None] = collections.OrderedDict()

    def hashes(self, ids: list[int]) -> list[int]:
        """The chained hash of every full block of ``ids``."""
        out, h, size = [], 0, self.block_size
        for i in range(0, len(ids) - size + 1, size):
            h = hash((h, *ids[i : i + size]))
            out.append(h)
        return out

    def lookup(self, ids: list[int]) -> int:
        """Tokens at the start of ``ids`` already cached (whole blocks)."""
        hits = 0
        for h in self.hashes(ids):
            if h not in self.blocks:
                break
            self.blocks.move_to_end(h)
            hits += 1
        return hits * self.block_size

    def insert(self, ids: list[int]) -> None:
        """Cache every full block of ``ids``, evicting the least recently used beyond the capacity."""
        for h in self.hashes(ids):
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while self.capacity is not None and len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)


@dataclass(eq=False)
class Seq:
    """One request as the engine sees it. Times are virtual seconds."""

    prompt_tokens: int
    output_tokens: int
    prompt_ids: list[int] | None = None
    """Token ids for the prefix cache (None: use ``cached_tokens`` as given)."""
    generated_ids: list[int] | None = None
    cached_tokens: int = 0
    key: str = ""
    """The problem the request belongs to (for the benchmarks' per-problem figures)."""
    stage: str = ""
    arrival: float = 0.0
    admitted: float = math.nan
    first_token: float = math.nan
    finished: float = math.nan
    to_prefill: int = 0
    generated: int = 0
    reserved: int = 0
    done: threading.Event | None = None

    @property
    def ttft(self) -> float:
        """Time to first token (queueing + prefill)."""
        return self.first_token - self.arrival


SEGMENT_STEPS = 64
"""Most engine steps simulated at once between re-planning (so the KV read term follows the growing context)."""


class Engine:
    """vLLM's continuous-batching scheduler in virtual time: admission, chunked prefill, decode, prefix cache.

    Drive it with :meth:`add` (at the current virtual time) and :meth:`advance` (to a later time); it returns the
    requests that finished. :meth:`next_event_time` says when the next one will, if nothing new arrives.
    """

    def __init__(self, params: GPUParams | None = None, *, prefix_cache: bool = True) -> None:
        self.p = params or GPUParams()
        self.kv_capacity = self.p.kv_tokens()
        capacity_blocks = None if self.kv_capacity is None else self.kv_capacity // self.p.block_size
        self.cache = PrefixCache(self.p.block_size, capacity_blocks) if prefix_cache else None
        self.now = 0.0
        self.waiting: collections.deque[Seq] = collections.deque()
        self.prefilling: collections.deque[Seq] = collections.deque()
        self.decoding: list[Seq] = []
        self.context_tokens = 0
        self.kv_used = 0
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the counters (not the cache or the requests in flight)."""
        self.busy = self.prefill_busy = 0.0
        self.steps = self.decode_tokens = self.prefill_tokens = self.cached_tokens = self.prompt_tokens = 0
        self.batch_time = 0.0  # ∫ batch dt over busy time
        self.peak_running = self.peak_waiting = self.peak_kv = self.requests = 0
        self.queued_time = 0.0

    # --- driving --------------------------------------------------------------------------------------------

    def add(self, seq: Seq) -> None:
        """A request arrives now."""
        seq.arrival = self.now
        self.waiting.append(seq)
        self.requests += 1
        self.peak_waiting = max(self.peak_waiting, len(self.waiting))

    def idle(self) -> bool:
        """True when nothing is waiting or running."""
        return not (self.waiting or self.prefilling or self.decoding)

    def next_event_time(self) -> float | None:
        """When the next request finishes or the batch changes, if nothing arrives (None: idle)."""
        self._admit()
        plan = self._plan()
        return None if plan is None else self.now + plan[0] * plan[1]

    def advance(self, until: float) -> list[Seq]:
        """Run the engine up to virtual time ``until``; the requests that finished, in order."""
        finished: list[Seq] = []
        while True:
            finished += self._collect()
            self._admit()
            plan = self._plan()
            if plan is None:
                self.now = max(self.now, until)
                return finished
            steps, dt = plan
            if self.now + steps * dt > until + 1e-12:
                steps = int((until - self.now) // dt)
                if steps > 0:
                    self._apply(steps, dt)
                return finished + self._collect()
            self._apply(steps, dt)

    def run_until_idle(self) -> list[Seq]:
        """Advance until every request has finished (offline use)."""
        finished: list[Seq] = []
        while (t := self.next_event_time()) is not None:
            finished += self.advance(t)
        return finished

    # --- the scheduler --------------------------------------------------------------------------------------

    def _admit(self) -> None:
        while self.waiting and len(self.prefilling) + len(self.decoding) < self.p.max_num_seqs:
            seq = self.waiting[0]
            cached = seq.cached_tokens
            if seq.prompt_ids is not None:
                cached = self.cache.lookup(seq.prompt_ids) if self.cache else 0
            cached = max(0, min(cached, seq.prompt_tokens - 1))  # the last prompt token is always computed
            need = seq.prompt_tokens - cached + seq.output_tokens
            running = self.prefilling or self.decoding
            if self.kv_capacity is not None and self.kv_used + need > self.kv_capacity and running:
                return
            self.waiting.popleft()
            seq.cached_tokens, seq.to_prefill, seq.reserved = cached, seq.prompt_tokens - cached, need
            seq.admitted = self.now
            self.queued_time += self.now - seq.arrival
            self.kv_used += need
            self.prompt_tokens += seq.prompt_tokens
            self.cached_tokens += cached
            self.prefilling.append(seq)
        self.peak_running = max(self.peak_running, len(self.prefilling) + len(self.decoding))
        self.peak_kv = max(self.peak_kv, self.kv_used)

    def _plan(self) -> tuple[int, float] | None:
        batch = len(self.decoding)
        if not batch and not self.prefilling:
            return None
        budget = max(self.p.max_num_batched_tokens - batch, 1)
        pending = sum(s.to_prefill for s in self.prefilling)
        steps = SEGMENT_STEPS
        if batch:
            steps = min(steps, min(s.output_tokens - s.generated for s in self.decoding))
        if self.prefilling:
            steps = min(steps, math.ceil(self.prefilling[0].to_prefill / budget))
        steps = max(steps, 1)
        dt = self.p.step_seconds(batch, min(budget, pending), self.context_tokens + batch * steps / 2)
        return steps, dt

    def _apply(self, steps: int, dt: float) -> None:
        batch = len(self.decoding)
        for seq in self.decoding:
            seq.generated += steps
        self.context_tokens += batch * steps
        self.decode_tokens += batch * steps
        self.steps += steps
        self.busy += steps * dt
        self.batch_time += batch * steps * dt
        end = self.now + steps * dt
        if self.prefilling:
            budget = max(self.p.max_num_batched_tokens - batch, 1) * steps
            self.prefill_busy += steps * dt
            while self.prefilling and budget > 0:
                head = self.prefilling[0]
                take = min(head.to_prefill, budget)
                head.to_prefill -= take
                budget -= take
                self.prefill_tokens += take
                if head.to_prefill:
                    break
                self.prefilling.popleft()
                head.first_token, head.generated = end, 1
                self.context_tokens += head.prompt_tokens + 1
                self.decoding.append(head)
                if self.cache is not None and head.prompt_ids is not None:
                    self.cache.insert(head.prompt_ids)
        self.now = end

    def _collect(self) -> list[Seq]:
        done = [s for s in self.decoding if s.generated >= s.output_tokens]
        if not done:
            return done
        self.decoding = [s for s in self.decoding if s.generated < s.output_tokens]
        for seq in done:
            seq.finished = self.now
            self.context_tokens -= seq.prompt_tokens + seq.generated
            self.kv_used -= seq.reserved
            if self.cache is not None and seq.prompt_ids is not None:
                self.cache.insert(seq.prompt_ids + (seq.generated_ids or []))
            seq.prompt_ids = seq.generated_ids = None  # done with them: keep the log small
        return done

    def stats(self) -> dict[str, Any]:
        """The counters since the last reset."""
        return {
            "virtual_now": self.now, "busy": self.busy, "prefill_busy": self.prefill_busy, "steps": self.steps,
            "decode_tokens": self.decode_tokens, "prefill_tokens": self.prefill_tokens,
            "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
            "mean_batch": self.batch_time / self.busy if self.busy else 0.0, "peak_running": self.peak_running,
            "peak_waiting": self.peak_waiting, "peak_kv": self.peak_kv, "kv_capacity": self.kv_capacity,
            "requests": self.requests, "queued_time": self.queued_time,
        }


# --- what it answers: realistic lengths per SCALE stage -----------------------------------------------------------


@dataclass(frozen=True)
class LengthProfile:
    """Reply lengths (completion tokens) per SCALE stage; each drawn around its mean (log-normal, ``spread``)."""

    name: str
    subproblems: tuple[int, int]
    """Sub-problems per decomposition (uniform, inclusive)."""
    hard_share: float
    """Share of sub-problems the model rates hard (d = 0.8; else d = 0.1): System 2 at τ = 0.2."""
    system2: int
    """System 2 reply: thinking plus the answer after it."""
    system2_answer: int
    system1: int
    decompose: int
    select: int
    assess: int
    spread: float = 0.4
    source: str = ""


PROFILES = {
    "aime": LengthProfile(
        "aime", (5, 9), 0.76, system2=4500, system2_answer=350, system1=600, decompose=220, select=12, assess=10,
        source="Qwen3-32B SCALE on AIME24/25 (paper Table 1/2: Tpi 3,550-3,709 tokens per sub-problem, Tok "
               "25,581-26,643 per problem, so ~7 sub-problems; Hard 75.6-75.8%): 0.76 × 4,500 + 0.24 × 600 ≈ "
               "3,560 per sub-problem. Control-call lengths are assumptions (JSON replies, thinking off)."),
    "amc": LengthProfile(
        "amc", (4, 8), 0.7, system2=2500, system2_answer=300, system1=450, decompose=200, select=12, assess=10,
        source="Qwen3-32B SCALE on AMC23 (paper Table 1: Tpi 1,991, Tok 12,556, so ~6 sub-problems; Hard% not "
               "published, 70% assumed)."),
}

_SENTENCE = ("so the value follows from the relation above and we check it against the condition given in the "
             "problem before moving on to the next quantity which depends on it ")
_TEXT = (_SENTENCE * (60_000 // len(_SENTENCE.split()) + 1)).strip()
_ENDS = [m.end() for m in re.finditer(r"\S+", _TEXT)]
_VERBS = ["Find", "Determine", "Compute", "Work out", "Establish", "Obtain", "Derive", "Express"]


def words(n: int) -> str:
    """``n`` words of filler text (one token each for the fake's tokenizer)."""
    return _TEXT[: _ENDS[min(n, len(_ENDS)) - 1]] if n > 0 else ""


def problem_text(body: dict[str, Any]) -> str:
    """The problem P of a SCALE request (the first user turn opens with it), else the whole first user turn."""
    first = next((str(m.get("content", "")) for m in body.get("messages") or [] if m.get("role") == "user"), "")
    return first.removeprefix("Original problem:\n").split("\n\n", 1)[0].strip()


def problem_key(problem: str) -> str:
    """The key the server logs a request under: from P's first paragraph (what :func:`problem_text` sees)."""
    return f"{zlib.crc32(problem.strip().split(chr(10) * 2, 1)[0].strip().encode()):08x}"


COPY_TAG = re.compile(r"^\[copy \d+\]\s*")
"""A problem that opens with ``[copy N]`` is a copy of the problem without the tag (bench/scale_out.py)."""


def plan_key(problem: str) -> str:
    """The key a problem's replies (lengths, difficulties) are drawn under: :func:`problem_key` of the problem
    without a leading ``[copy N]`` tag, so copies of a problem do the same work, each logged under its own key (and
    sharing no prefix-cache blocks beyond the system prompt, since the tag comes first)."""
    return problem_key(COPY_TAG.sub("", problem.strip()))


@dataclass
class Plan:
    """What the simulated model will do on one problem."""

    n: int
    difficulties: list[float]
    solve_tokens: list[int] | None = None
    """Replayed: each step's completion tokens (else drawn from the profile by mode)."""
    decompose: int = 0
    select: int = 0
    assess: int = 0


class Workload:
    """The replies: every SCALE stage answered plausibly, with lengths from a profile or replayed from a run."""

    def __init__(self, profile: LengthProfile | str = "aime", replay: str | Path | None = None) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.replayed: dict[str, dict[str, Any]] = {}
        if replay:
            for line in Path(replay).read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if row.get("units") and not row.get("error"):
                    self.replayed[problem_key(row["problem"])] = row
        self._plans: dict[str, Plan] = {}
        self._variants: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the per-problem state (the decomposition variants handed out)."""
        with self._lock:
            self._variants.clear()

    def _rng(self, key: str, *parts: object) -> random.Random:
        return random.Random(zlib.crc32("|".join(map(str, (key, *parts))).encode()))

    def _draw(self, mean: int, key: str, *parts: object) -> int:
        spread = self.profile.spread
        value = mean * math.exp(self._rng(key, *parts).gauss(-spread * spread / 2, spread))
        return max(4, round(value))

    def plan(self, key: str) -> Plan:
        """The problem's plan (replayed when its problem is in the replay file)."""
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        row = self.replayed.get(key)
        if row is not None:
            units = row["units"]
            stages = row["tokens"]["by_stage"]
            candidates = max(int(row["settings"].get("candidates", 1)), 1)
            plan = Plan(len(units), [u["difficulty"] if u.get("difficulty") is not None else 1.0 for u in units],
                        [max(int(u["completion_tokens"]), 1) for u in units],
                        decompose=max(stages.get("decompose", 0) // candidates, 4),
                        select=max(stages.get("select", 0), 1), assess=max(stages.get("assess", 0) // len(units), 1))
        else:
            p, rng = self.profile, self._rng(key, "plan")
            n = rng.randint(*p.subproblems)
            plan = Plan(n, [0.8 if rng.random() < p.hard_share else 0.1 for _ in range(n)],
                        decompose=self._draw(p.decompose, key, "decompose"), select=p.select, assess=p.assess)
        with self._lock:
            return self._plans.setdefault(key, plan)

    def reply(self, body: dict[str, Any]) -> Reply:
        """The reply to one chat request."""
        stage = stage_of(body)
        key = plan_key(problem_text(body))
        plan = self.plan(key)
        if stage == "decompose":
            with self._lock:
                variant = self._variants[key]
                self._variants[key] += 1
            each = max(plan.decompose // plan.n - 6, 1)
            verb = _VERBS[variant % len(_VERBS)]
            subs = [f"{verb} {words(each)} (part {i + 1} of {plan.n})" for i in range(plan.n)]
            return Reply(content=json.dumps({"subproblems": subs}), completion_tokens=plan.decompose)
        if stage == "select":
            return Reply(content='{"choice": 1}', completion_tokens=plan.select)
        if stage == "assess":
            match = re.search(r"\(part (\d+) of \d+\)", current_subproblem(body))
            index = int(match.group(1)) - 1 if match else plan.n - 1
            d = plan.difficulties[min(index, plan.n - 1)]
            return Reply(content=json.dumps({"difficulty": d}), completion_tokens=plan.assess)
        step = earlier_solutions(body) if stage in {"system1", "system2"} else 0
        thinking = thinking_flag(body) is not False and stage != "system1"
        if plan.solve_tokens is not None and step < len(plan.solve_tokens):
            total = plan.solve_tokens[step]
        elif thinking:
            total = self._draw(self.profile.system2, key, "solve", step, "system2")
        else:
            total = self._draw(self.profile.system1, key, "solve", step, "system1")
        answer = f"The result of this step is \\boxed{{{10 * (step + 1)}}}"
        if not thinking:
            return Reply(content=f"{words(max(total - 7, 0))} {answer}".strip())
        visible = min(self.profile.system2_answer, total // 4)
        return Reply(content=f"{words(max(visible - 7, 0))} {answer}".strip(),
                     reasoning=words(max(total - max(visible, 7), 1)))


# --- the server: the engine on the wall clock ---------------------------------------------------------------------


class SimClock:
    """Runs an :class:`Engine` in real time × ``speed``: requests block in :meth:`run` until they finish."""

    def __init__(self, engine: Engine, speed: float) -> None:
        self.engine, self.speed = engine, speed
        self.cond = threading.Condition()
        self.t0 = time.monotonic()
        self.log: list[dict[str, Any]] = []
        self.lag_max = self.lag_sum = 0.0
        self.wakeups = 0
        self._expected: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="gpu-sim-clock", daemon=True)
        self._thread.start()

    def now(self) -> float:
        """The virtual time now."""
        return (time.monotonic() - self.t0) * self.speed

    def wall(self) -> float:
        """Real seconds since the clock started."""
        return time.monotonic() - self.t0

    def run(self, seq: Seq) -> Seq:
        """Submit ``seq`` now and wait until the simulated GPU has generated its reply."""
        seq.done = threading.Event()
        arrived = self.wall()
        with self.cond:
            self._finish(self.engine.advance(self.now()))
            self.engine.add(seq)
            self.cond.notify()
        seq.done.wait()
        self.log.append({"key": seq.key, "stage": seq.stage, "wall_arrival": arrived, "wall_done": self.wall(),
                         "arrival": seq.arrival, "admitted": seq.admitted, "first_token": seq.first_token,
                         "finished": seq.finished, "prompt": seq.prompt_tokens, "cached": seq.cached_tokens,
                         "completion": seq.output_tokens})
        return seq

    def _finish(self, finished: Iterable[Seq]) -> None:
        for seq in finished:
            if seq.done is not None:
                seq.done.set()

    def _loop(self) -> None:
        with self.cond:
            while not self._stopped:
                now = self.now()
                if self._expected is not None and now >= self._expected:
                    lag = (now - self._expected) / self.speed
                    self.lag_max, self.lag_sum, self.wakeups = max(self.lag_max, lag), self.lag_sum + lag, \
                        self.wakeups + 1
                self._finish(self.engine.advance(now))
                self._expected = self.engine.next_event_time()
                if self._expected is None:
                    self.cond.wait()
                else:
                    self.cond.wait(max((self._expected - self.now()) / self.speed, 0.0))

    def stop(self) -> None:
        """Stop the clock thread."""
        with self.cond:
            self._stopped = True
            self.cond.notify()


@dataclass(kw_only=True)
class SimulatedGPUServer(FakeVLLMServer):
    """:class:`FakeVLLMServer` whose replies take the time a batching GPU server would (see the module docstring).

    Args:
        speed: Simulated seconds per real second.
        params: The GPU and model (:class:`GPUParams`).
        workload: What to answer (:class:`Workload`).
        prefix_cache: Simulate vLLM's automatic prefix caching.

    """

    speed: float = 1.0
    params: GPUParams = field(default_factory=GPUParams)
    workload: Workload = field(default_factory=Workload)
    prefix_cache: bool = True
    backlog: int = 2048
    """The listening socket's backlog: hundreds of clients connect at once."""

    def __post_init__(self) -> None:
        self.script = self._simulate
        self.engine = Engine(self.params, prefix_cache=self.prefix_cache)
        self.clock: SimClock | None = None
        self._rendered: dict[int, dict[str, Any]] = {}

    def start(self) -> SimulatedGPUServer:
        """Start serving (and the simulated GPU's clock)."""
        self.clock = SimClock(self.engine, self.speed)
        super().start()
        assert self._server is not None
        self._server.socket.listen(self.backlog)  # ThreadingHTTPServer listens with a backlog of 5
        return self

    def stop(self) -> None:
        """Stop serving."""
        super().stop()
        if self.clock is not None:
            self.clock.stop()

    def __enter__(self) -> SimulatedGPUServer:
        return self.start()

    def _simulate(self, body: dict[str, Any]) -> Reply:
        """The script: the workload's reply, returned once the simulated GPU has generated it."""
        reply = self.workload.reply(body)
        full = FakeVLLMServer.render(self, body, reply)
        message = full["choices"][0]["message"]
        ids = prompt_token_ids(body)
        seq = Seq(len(ids), max(int(full["usage"]["completion_tokens"]), 1), prompt_ids=ids,
                  generated_ids=prompt_token_ids({"prompt": message.get("content") or ""}),
                  key=problem_key(problem_text(body)), stage=stage_of(body))
        assert self.clock is not None, "server not started"
        self.clock.run(seq)
        full["usage"]["prompt_tokens_details"] = {"cached_tokens": seq.cached_tokens}  # --enable-prompt-tokens-details
        self._rendered[id(body)] = full
        return reply

    def render(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The completion computed (and timed) by :meth:`_simulate`."""
        return self._rendered.pop(id(body), None) or super().render(body, reply)

    def stats(self) -> dict[str, Any]:
        """The engine's counters, the clock's lag and the request log since the last reset."""
        assert self.clock is not None
        with self.clock.cond:
            stats = self.engine.stats()
            lag = {"lag_max": self.clock.lag_max,
                   "lag_mean": self.clock.lag_sum / self.clock.wakeups if self.clock.wakeups else 0.0}
            return {**stats, **lag, "speed": self.speed, "wall": self.clock.wall(), "log": list(self.clock.log)}

    def reset(self) -> None:
        """Clear the counters, the request log and the prefix cache."""
        assert self.clock is not None
        with self.clock.cond:
            self.engine.reset_stats()
            if self.engine.cache is not None:
                self.engine.cache.blocks.clear()
            self.clock.log.clear()
            self.clock.lag_max = self.clock.lag_sum = 0.0
            self.clock.wakeups = 0
        self.workload.reset()

    def route_post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """``/sim/stats`` and ``/sim/reset`` beside vLLM's ``/tokenize``."""
        if path == "/sim/stats":
            return 200, self.stats()
        if path == "/sim/reset":
            self.reset()
            return 200, {"ok": True}
        return super().route_post(path, body)


# --- the ideal client: the same requests, no time between them ----------------------------------------------------


def rounds_of(log: list[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    """Each problem's requests grouped into rounds: a fan-out (decompositions, assessments) sent together is one
    round, every other request its own."""
    problems: dict[str, list[list[dict[str, Any]]]] = collections.defaultdict(list)
    for entry in sorted(log, key=lambda e: e["arrival"]):
        rounds = problems[entry["key"]]
        last = rounds[-1] if rounds else None
        if (last and entry["stage"] in {"decompose", "assess"} and last[0]["stage"] == entry["stage"]
                and entry["arrival"] < min(e["finished"] for e in last)):
            last.append(entry)
        else:
            rounds.append([entry])
    return dict(problems)


def replay_ideal(log: list[dict[str, Any]], concurrency: int, params: GPUParams) -> list[tuple[float, float]]:
    """(start, end) in virtual seconds of every problem of ``log`` when a client with no overhead at all runs
    ``concurrency`` of them at a time on the same simulated server (the cached tokens are those of the log)."""
    queue = collections.deque(rounds_of(log).values())
    engine = Engine(params, prefix_cache=False)
    active: dict[int, tuple[list[list[dict[str, Any]]], float]] = {}
    pending: dict[int, int] = {}
    spans: list[tuple[float, float]] = []
    owner: dict[int, int] = {}

    def submit(problem: int) -> None:
        rounds, _ = active[problem]
        batch = rounds.pop(0)
        pending[problem] = len(batch)
        for entry in batch:
            seq = Seq(entry["prompt"], entry["completion"], cached_tokens=entry["cached"])
            owner[id(seq)] = problem
            engine.add(seq)

    def start(problem: int) -> None:
        active[problem] = (list(queue.popleft()), engine.now)
        submit(problem)

    counter = 0
    while queue and len(active) < concurrency:
        start(counter)
        counter += 1
    while active:
        t = engine.next_event_time()
        assert t is not None
        for seq in engine.advance(t):
            problem = owner.pop(id(seq))
            pending[problem] -= 1
            if pending[problem]:
                continue
            rounds, began = active[problem]
            if rounds:
                submit(problem)
                continue
            spans.append((began, engine.now))
            del active[problem]
            if queue:
                start(counter)
                counter += 1
    return spans


def main(argv: list[str] | None = None) -> int:
    """Serve the simulated GPU on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=100.0, help="simulated seconds per real second")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="aime")
    parser.add_argument("--replay", help="a results file whose token counts to replay")
    parser.add_argument("--kv-capacity", type=int, default=None, help="KV cache tokens (0: unbounded)")
    parser.add_argument("--no-prefix-cache", action="store_true")
    args = parser.parse_args(argv)
    params = GPUParams(kv_capacity=args.kv_capacity)
    server = SimulatedGPUServer(port=args.port, speed=args.speed, params=params,
                                workload=Workload(args.profile, args.replay), prefix_cache=not args.no_prefix_cache)
    serve_until_interrupted(server, lambda s: f"gpu-sim: {s.base_url} ({params.describe()}; speed {args.speed:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["PROFILES", "Engine", "GPUParams", "LengthProfile", "PrefixCache", "Seq", "SimulatedGPUServer",
           "Workload", "plan_key", "problem_key", "replay_ideal", "rounds_of"]

"""The simulated GPU server of bench/gpu_sim.py: its timing model, its prefix cache, and a SCALE run against it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def sim():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("gpu_sim")
    finally:
        sys.path.remove(str(BENCH))


def finish_alone(sim, prompt: int, output: int, params=None, cached: int = 0):
    engine = sim.Engine(params, prefix_cache=False)
    seq = sim.Seq(prompt, output, cached_tokens=cached)
    engine.add(seq)
    engine.run_until_idle()
    return seq


def test_time_to_first_token_grows_with_uncached_prompt_tokens(sim):
    short, long = finish_alone(sim, 1_000, 1), finish_alone(sim, 8_000, 1)
    assert long.ttft > 4 * short.ttft
    params = sim.GPUParams()
    assert long.ttft == pytest.approx(params.step_seconds(0, 8_000, 0), rel=0.01)  # one 8K chunk, compute-bound


def test_a_cached_prefix_cuts_the_time_to_first_token(sim):
    cold, warm = finish_alone(sim, 8_000, 1), finish_alone(sim, 8_000, 1, cached=7_000)
    assert warm.ttft < cold.ttft / 4
    assert warm.cached_tokens == 7_000


def test_the_prefix_cache_is_shared_across_requests(sim):
    engine = sim.Engine()
    shared = list(range(4_000))
    first = sim.Seq(4_100, 10, prompt_ids=[*shared, *range(10_000, 10_100)])
    engine.add(first)
    engine.run_until_idle()
    second = sim.Seq(4_050, 10, prompt_ids=[*shared, *range(20_000, 20_050)])
    engine.add(second)
    engine.run_until_idle()
    assert first.cached_tokens == 0
    assert second.cached_tokens == 4_000  # the shared 250 blocks of 16 tokens
    assert second.ttft < first.ttft / 5


def test_per_token_time_grows_slowly_with_the_batch(sim):
    params = sim.GPUParams()
    alone = params.step_seconds(1, 0, 1_000)
    assert params.step_seconds(8, 0, 8 * 1_000) < 1.1 * alone  # memory-bound: 8 sequences cost ~one
    assert params.step_seconds(64, 0, 64 * 1_000) < 1.6 * alone
    # and the engine gives it: 64 requests at once finish far sooner than 64 one after the other
    engine = sim.Engine(params, prefix_cache=False)
    seqs = [sim.Seq(500, 500, cached_tokens=0) for _ in range(64)]
    for seq in seqs:
        engine.add(seq)
    engine.run_until_idle()
    together = max(s.finished for s in seqs)
    alone_total = finish_alone(sim, 500, 500).finished
    assert together < 2 * alone_total


def test_the_kv_cache_capacity_queues_requests(sim):
    params = sim.GPUParams(kv_capacity=10_000)
    engine = sim.Engine(params, prefix_cache=False)
    seqs = [sim.Seq(1_000, 4_000) for _ in range(4)]  # 5,000 tokens each: two fit
    for seq in seqs:
        engine.add(seq)
    engine.run_until_idle()
    assert engine.peak_running == 2
    assert seqs[2].admitted >= min(seqs[0].finished, seqs[1].finished)


def test_replay_ideal_runs_the_logged_rounds(sim):
    log = [{"key": k, "stage": stage, "arrival": t, "finished": t + 1, "prompt": 500, "cached": 0, "completion": c}
           for k in ("a", "b")
           for stage, t, c in [("decompose", 0, 100), ("decompose", 0, 100), ("select", 2, 5), ("system2", 3, 800)]]
    assert [len(r) for r in sim.rounds_of(log)["a"]] == [2, 1, 1]
    one = sim.replay_ideal(log, 1, sim.GPUParams())
    two = sim.replay_ideal(log, 2, sim.GPUParams())
    assert len(one) == len(two) == 2
    assert max(e for _, e in two) < 0.6 * max(e for _, e in one)  # two at once: about the time of one


def test_a_scale_run_against_the_server_has_realistic_lengths_per_stage(sim):
    from scale_graph import Context, solve

    problem = "A train travels 120 km in 2 hours and then 60 km in 1 hour. What is its average speed in km/h?"
    with sim.SimulatedGPUServer(speed=2_000) as server:  # ~6 simulated minutes in well under a second
        result = solve(problem, context=Context.from_profile("paper", base_url=server.base_url))
        stats = server.stats()
    assert result.answer is not None
    tokens = {stage: [e["completion"] for e in stats["log"] if e["stage"] == stage]
              for stage in ("decompose", "select", "assess", "system1", "system2")}
    assert len(tokens["decompose"]) == 8 and len(tokens["select"]) == 1
    assert len(tokens["assess"]) == len(result.steps) >= 5
    assert tokens["system2"] and min(tokens["system2"]) > 1_000  # long thinking
    assert all(t < 2_000 for t in tokens["system1"])  # short answers
    assert max(tokens["decompose"] + tokens["select"] + tokens["assess"]) < 600  # short control calls
    later = [s for s in result.steps if s["index"] > 0]
    assert all(s["cached_tokens"] > 0 for s in later)  # each solve request finds the previous one cached
    assert stats["virtual_now"] > 60  # minutes of simulated GPU time

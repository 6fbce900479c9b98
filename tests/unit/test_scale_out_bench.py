"""What bench/scale_out.py relies on in the simulated GPU: copies of a problem (``[copy N] P``) do the same work,
each logged under its own key, and share no conversation in the prefix cache."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from scale_graph import Context, solve

BENCH = Path(__file__).resolve().parents[2] / "bench"
PROBLEM = "A train travels 120 km in 2 hours and then 60 km in 1 hour. What is its average speed in km/h?"


@pytest.fixture(scope="module")
def sim():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("gpu_sim")
    finally:
        sys.path.remove(str(BENCH))


def test_copies_of_a_problem_do_the_same_work_under_their_own_keys(sim) -> None:
    assert sim.plan_key(f"[copy 2] {PROBLEM}") == sim.plan_key(PROBLEM) == sim.problem_key(PROBLEM)
    assert sim.problem_key(f"[copy 2] {PROBLEM}") != sim.problem_key(f"[copy 1] {PROBLEM}")
    with sim.SimulatedGPUServer(speed=2_000) as server:
        runs = [solve(f"[copy {c}] {PROBLEM}", context=Context.from_profile("paper", base_url=server.base_url))
                for c in (1, 2)]
        log = server.stats()["log"]
    keys = [sim.problem_key(f"[copy {c}] {PROBLEM}") for c in (1, 2)]
    work = [sorted((e["stage"], e["completion"]) for e in log if e["key"] == key) for key in keys]
    assert work[0] and work[0] == work[1]  # the same requests with the same lengths, each copy under its key
    assert [s["completion_tokens"] for s in runs[0].steps] == [s["completion_tokens"] for s in runs[1].steps]
    # the copies' conversations differ from the first user turn on, so each copy's solves find in the prefix cache
    # only what its own earlier requests left there (two runs of the very same text would share it all)
    cached = [[e["cached"] for e in log if e["key"] == key and e["stage"] in {"system1", "system2"}] for key in keys]
    assert cached[0] == cached[1]

"""Issue 16's commands on the embedded model, from the command line as a fresh clone runs them (``--limit 2``):
``scale calibrate`` on a ``scale eval`` run, ``--assess agreement``, and ``--token-budget`` routing in ``scale sweep``
(with the per-mode costs the calibration measured), compared at equal tokens with a fixed-τ run.

Budgets are tiny so this stays a few minutes on 2 CPU cores; only what the commands write is checked, not how
clever a 0.5B model is. ``tests/unit/test_calibrate.py::test_the_issue16_commands_on_the_fake_model`` runs the same
commands (:func:`issue16_commands`) against the scripted fake server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scale_graph.eval.calibrate import CALIBRATION_FILE, OUT_SUBDIR, REPORT_FILE
from scale_graph.eval.equal_tokens import REPORT_FILE as EQUAL_TOKENS_FILE
from scale_graph.eval.metrics import compute_all
from scale_graph.eval.results import read_dirs, read_rows

pytestmark = pytest.mark.integration

TINY = ["--candidates", "1", "--max-subproblems", "3", "--system1-max-tokens", "48", "--system2-max-tokens", "64",
        "--control-max-tokens", "96", "--limit", "2", "--quiet"]
"""The run settings of every eval: one decomposition, at most 3 sub-problems, small budgets, 2 problems."""


def issue16_commands(root: Path, endpoint: list[str]) -> list[list[str]]:
    """The command lines, in order (``endpoint``: ``[]`` for the embedded model, or ``--base-url URL``).

    1. ``scale eval`` SCALE (self-rated d) into ``root/results``; 2. ``scale calibrate`` its first 2 sub-problems;
    3. ``scale eval --assess agreement`` into the same directory; 4. ``scale sweep`` a fixed τ and a token budget
    routed with the calibration's per-mode costs (``--token-costs``) into ``root/sweep``.
    """
    results, sweep = str(root / "results"), str(root / "sweep")
    return [
        ["eval", "--dataset", "gsm8k_dev", "--method", "scale", *TINY, *endpoint, "--out", results],
        ["calibrate", results, "--limit", "2", "--quiet", *endpoint],
        ["eval", "--dataset", "gsm8k_dev", "--method", "scale", "--assess", "agreement", "--agreement-samples", "2",
         *TINY, *endpoint, "--out", results],
        ["sweep", "--dataset", "gsm8k_dev", "--thresholds", "0.2", "--token-budgets", "600", "--token-costs",
         results, *TINY, *endpoint, "--out", sweep],
    ]


def check_outputs(root: Path) -> None:
    """What the four commands must have written."""
    results, sweep = root / "results", root / "sweep"
    calibration = read_rows(results / OUT_SUBDIR / CALIBRATION_FILE)
    assert len(calibration) == 2, "calibrate --limit 2 answers 2 sub-problems"
    for row in calibration:
        assert {row["system1"]["reused"], row["system2"]["reused"]} == {True, False}  # the run's own mode reused
        assert row["agree"] in (True, False, None) and row["assess"] == "upfront"
    assert "AUROC" in (results / OUT_SUBDIR / REPORT_FILE).read_text()
    runs = {r["settings"]["assess"]: r for r in read_dirs([results])}
    assert set(runs) == {"upfront", "agreement"}
    assert len([r for r in read_dirs([results]) if r["settings"]["assess"] == "agreement"]) == 2
    labels = {m.label for m in compute_all(read_dirs([sweep]))}
    assert labels == {"scale τ=0.2 S2=64", "scale budget=600 S2=64"}
    budget_rows = [r for r in read_dirs([sweep]) if r["settings"].get("token_budget") == 600]
    assert len(budget_rows) == 2 and budget_rows[0]["settings"]["system1_token_cost"] > 0
    assert "scale budget=600" in (sweep / EQUAL_TOKENS_FILE).read_text()


def test_issue16_commands_on_the_embedded_model(tmp_path, cli_env):
    """Each command a fresh process with no endpoint configured: it starts the embedded model itself."""
    for argv in issue16_commands(tmp_path, []):
        done = subprocess.run([sys.executable, "-m", "scale_graph.cli", *argv], env=cli_env, capture_output=True,
                              text=True, timeout=1200, check=False)
        assert done.returncode == 0, f"scale {' '.join(argv)}\n{done.stderr[-3000:]}"
    check_outputs(tmp_path)

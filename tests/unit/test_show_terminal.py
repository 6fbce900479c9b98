"""``scale show`` prints model text inert: sub-problems, solutions and answers cannot emit terminal escapes."""

from __future__ import annotations

import re

from scale_graph.cli import main
from tests.conftest import make_script
from tests.unit.test_budgets import _no_preflight
from tests.unit.test_inputs import HOSTILE


def test_scale_show_prints_model_text_inert(monkeypatch, capsys, fake_models) -> None:
    """Before: the sub-problems were printed as rich markup, raw: ESC, BEL, CSI and U+202E reached the terminal."""
    subs = [f"First {HOSTILE}", "Then the answer?"]
    fake_models(make_script(subproblems=subs, solution=lambda sub, body: f"so \\boxed{{{HOSTILE}}}"))
    monkeypatch.setenv("SCALE_BASE_URL", "http://fake.invalid/v1")
    monkeypatch.setattr("scale_graph.threads.endpoint", _no_preflight)
    assert main(["solve", "--model", "m", "--candidates", "1", "What is 2 + 2?"]) == 0
    thread = re.search(r"thread: (\S+)", capsys.readouterr().out)
    assert thread is not None

    assert main(["show", thread.group(1)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    assert "First \\x1b[2J" in out  # the sub-problem is shown, its controls as escapes
    assert "[red]markup[/red]" in out and "[link=http://evil.example]x[/link]" in out  # text, not markup
    assert "answer: " in out

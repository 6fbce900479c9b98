"""Shared fixtures: the scripted fake model (in-process) and a helper that runs the SCALE graph on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pytest

from scale_graph import models
from scale_graph.baselines.context import BaselineContext
from scale_graph.context import Context
from scale_graph.testing import FakeChatModels, Reply, Script, current_subproblem, scale_script, stage_of

FAKE_URL = "http://fake.invalid/v1"


@pytest.fixture(autouse=True)
def isolated_thread_store(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs through the CLI keep their threads in a scratch $SCALE_HOME, never in the user's."""
    monkeypatch.setenv("SCALE_HOME", str(tmp_path_factory.mktemp("scale-home")))
    monkeypatch.delenv("SCALE_CHECKPOINTER", raising=False)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Callable[[Script], FakeChatModels]:
    """Install a scripted fake chat model for every profile; returns a function taking the script."""

    def install(script: Script = scale_script) -> FakeChatModels:
        fakes = FakeChatModels(script)
        monkeypatch.setattr(models.client, "chat_model", fakes)
        return fakes

    return install


def fake_context(**overrides: Any) -> Context:
    """A Context pointing at the fake endpoint (never contacted: the chat model is faked, and the model name and
    context length are given, so nothing needs to be asked of it). A baseline's knob (``samples``, ``rounds``,
    ``round_max_tokens``) among ``overrides`` makes it a :class:`BaselineContext`."""
    cls = BaselineContext if overrides.keys() & {f.name for f in fields(BaselineContext)} - CONTEXT_FIELDS else Context
    return cls(**{"base_url": FAKE_URL, "model": "fake-model", "max_model_len": 1_000_000, "candidates": 2,
                  **overrides})


CONTEXT_FIELDS = {f.name for f in fields(Context)}


SUBPROBLEMS = ["How many in April?", "How many in May?", "What is the final answer?"]


def make_script(
    subproblems: list[str] | None = None,
    difficulty: dict[str, str] | None = None,
    decomposition: Callable[[dict[str, Any]], str] | None = None,
    choice: str = '{"choice": 1}',
    solution: Callable[[str, dict[str, Any]], str] | None = None,
) -> Script:
    """A fake-model script: a fixed decomposition, per-sub-problem difficulty replies (raw content), choice, and
    solutions (default: "... \\boxed{N*10}" for the N-th sub-problem).

    Under ``final_step="question"`` (the default) the last sub-problem asked is the problem itself: it is
    answered as the decomposition's last one.
    """
    subs = list(subproblems or SUBPROBLEMS)
    raw_difficulty = difficulty or {s: '{"difficulty": 0.5}' for s in subs}

    def as_listed(sub: str) -> str:
        return sub if sub in subs else subs[-1]

    def script(body: dict[str, Any]) -> Reply:
        stage = stage_of(body)
        if stage == "decompose":
            return Reply(content=decomposition(body) if decomposition else json.dumps({"subproblems": subs}))
        if stage == "select":
            return Reply(content=choice)
        if stage == "assess":
            return Reply(content=raw_difficulty[as_listed(current_subproblem(body))])
        if stage in {"system1", "system2"}:
            sub = as_listed(current_subproblem(body))
            if solution:
                return Reply(content=solution(sub, body))
            return Reply(content=f"Answer to {sub} \\boxed{{{(subs.index(sub) + 1) * 10}}}")
        raise AssertionError(f"unexpected request: {body}")

    return script

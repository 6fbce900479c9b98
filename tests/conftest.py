"""Shared fixtures: the scripted fake model (in-process) and a helper that runs the SCALE graph on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scale_graph import models
from scale_graph.context import Context
from scale_graph.testing import FakeChatModels, Script, scale_script

FAKE_URL = "http://fake.invalid/v1"


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Callable[[Script], FakeChatModels]:
    """Install a scripted fake chat model for every profile; returns a function taking the script."""

    def install(script: Script = scale_script) -> FakeChatModels:
        fakes = FakeChatModels(script)
        monkeypatch.setattr(models, "chat_model", fakes)
        return fakes

    return install


def fake_context(**overrides: Any) -> Context:
    """A Context pointing at the fake endpoint (never contacted: the chat model is faked)."""
    return Context(**{"base_url": FAKE_URL, "model": "fake-model", "candidates": 2, **overrides})

"""The real OpenAI client path against the scripted fake server on loopback: request bodies per preset, the token
limit field, reasoning capture, and transport faults."""

from __future__ import annotations

import time

import pytest

from scale_graph import prompts, solve
from scale_graph.context import Context
from scale_graph.models import EndpointError, build_profiles, messages_for
from scale_graph.testing import FakeOpenAIServer, Reply, call_once, scale_script, stage_of

PROBLEM = "What is 10 + 20?"


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def test_prompted_preset_bodies(server) -> None:
    result = solve(PROBLEM, context=Context(base_url=server.base_url, candidates=2, system1_max_tokens=64,
                                            system2_max_tokens=300, control_max_tokens=100))
    assert result.answer == "20"
    for body in server.requests:
        assert body["model"] == "fake-model"  # discovered from /v1/models
        assert "max_tokens" not in body  # langchain-openai sends the new field; the server must honour it
        assert body["temperature"] == 0.6 and body["top_p"] == 0.95
        assert "chat_template_kwargs" not in body
    budgets = {stage_of(b): b["max_completion_tokens"] for b in server.requests}
    assert budgets == {"decompose": 100, "assess": 100, "system1": 64, "system2": 300}


def test_qwen3_hybrid_switches_thinking_per_mode(server) -> None:
    solve(PROBLEM, context=Context(base_url=server.base_url, model="qwen3", preset="qwen3-hybrid", candidates=1))
    thinking = {stage_of(b): b["chat_template_kwargs"]["enable_thinking"] for b in server.requests}
    assert thinking == {"decompose": False, "assess": False, "system1": False, "system2": True}


def test_paired_preset_sends_system2_to_its_own_endpoint() -> None:
    with FakeOpenAIServer(model="qwen3-8b") as fast, FakeOpenAIServer(model="qwq-32b") as deep:
        solve(PROBLEM, context=Context(base_url=fast.base_url, preset="paired", system2_base_url=deep.base_url,
                                       system2_model="qwq-32b", candidates=1))
        assert {stage_of(b) for b in deep.requests} == {"system2"}
        assert all(b["model"] == "qwq-32b" and "chat_template_kwargs" not in b for b in deep.requests)
        assert "system2" not in fast.stages()
        assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in fast.requests)


def test_paired_preset_needs_a_system2_model() -> None:
    with pytest.raises(ValueError, match="System 2 model"):
        build_profiles(Context(preset="paired"), "http://x/v1", "m")


def test_reasoning_content_is_captured_and_counted() -> None:
    def script(body):
        if stage_of(body) == "system2":
            return Reply(content="so \\boxed{20}", reasoning="let me think " * 10)
        return scale_script(body)

    with FakeOpenAIServer(script) as srv:
        result = solve(PROBLEM, context=Context(base_url=srv.base_url, candidates=1))
    deep = [s for s in result.steps if s["mode"] == "system2"]
    assert deep and deep[0]["reasoning"] == "let me think " * 10
    assert deep[0]["completion_tokens"] == 2 + 30  # content words + reasoning words, as the server reported
    assert [s["reasoning"] for s in result.steps if s["mode"] == "system1"] == [None]


def test_token_limit_is_applied_by_the_server(server) -> None:
    profile = build_profiles(Context(system1_max_tokens=3), server.base_url, "fake-model").system1
    server.script = lambda body: Reply(content="one two three four five six")
    reply = call_once(profile, messages_for(profile, None, "count"))
    assert reply.completion_tokens == 3 and reply.finish_reason == "length"


@pytest.mark.parametrize("fault", [Reply(malformed=True), Reply(drop=True), Reply(drop_mid_response=True),
                                   Reply(status=500), Reply(status=503), Reply(status=429)],
                         ids=["malformed", "drop", "drop-mid-response", "500", "503", "429"])
def test_transport_faults_become_retryable_endpoint_errors(server, fault) -> None:
    profile = build_profiles(Context(), server.base_url, "fake-model").system1
    server.script = lambda body: fault
    with pytest.raises(EndpointError) as info:
        call_once(profile, messages_for(profile, prompts.SCALE_SYSTEM, "x"))
    assert info.value.retryable and server.base_url in str(info.value)


def test_read_timeout_is_retryable(server) -> None:
    profile = build_profiles(Context(request_timeout=0.5), server.base_url, "fake-model").system1
    server.script = lambda body: Reply(content="late \\boxed{1}", delay=2.0)
    start = time.monotonic()
    with pytest.raises(EndpointError, match="timed out") as info:
        call_once(profile, messages_for(profile, None, "x"))
    assert info.value.retryable and time.monotonic() - start < 2.0


def test_faults_then_recovery_complete_the_run(server) -> None:
    """Each stage's first request fails in a different way; the node retry policy recovers every one."""
    faults = {"decompose": Reply(status=503), "assess": Reply(drop_mid_response=True),
              "system1": Reply(status=429), "system2": Reply(malformed=True)}

    def script(body):
        return faults.pop(stage_of(body), None) or scale_script(body)

    server.script = script
    result = solve(PROBLEM, context=Context(base_url=server.base_url, candidates=1))
    assert result.answer == "20" and not faults
    assert server.stages().count("system2") == 2  # the malformed reply was asked again once


def test_unreachable_endpoint_fails_fast_naming_the_url() -> None:
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1:9"):
        solve(PROBLEM, context=Context(base_url="http://127.0.0.1:9/v1", candidates=1))
    assert time.monotonic() - start < 30

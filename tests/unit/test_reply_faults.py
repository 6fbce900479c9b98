"""Replies that are not finished replies, and the server's timing rules (issue 13, items 3 and 4).

Through the real OpenAI client against the fake HTTP server, streamed (as under a client streaming ``messages``,
which makes langchain-openai stream the completion) and not: a reply without a finish reason, without choices or
with usage that is not a token count is an ``EndpointError``, never a finished step; a reply without usage is
counted so budgets hold; ``Retry-After`` is waited (bounded); ``request_timeout`` bounds the whole reply.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypedDict

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph

from scale_graph.api import run_config
from scale_graph.baselines.context import BaselineContext
from scale_graph.baselines.graphs import cot, inftythink, majority
from scale_graph.context import Context
from scale_graph.graph.scale import compile_scale_graph
from scale_graph.graph.scale import graph as scale_graph
from scale_graph.models import EndpointError, ModelReply, ModeProfile, acall_model, build_profiles, client, messages_for
from scale_graph.models.chat import aclose_chat_models
from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of

SOLUTION = "Working for step 2. \\boxed{20}"
PROBLEM = "What is 10 + 20?"


# --- helpers ----------------------------------------------------------------------------------------------------


class _CallState(TypedDict, total=False):
    reply: Any


async def _acall(profile: ModeProfile, messages: list[BaseMessage], *, streamed: bool, **kwargs: Any) -> ModelReply:
    if not streamed:
        return await acall_model(profile, messages, **kwargs)

    async def call(state: _CallState) -> _CallState:
        return {"reply": await acall_model(profile, messages, **kwargs)}

    graph = StateGraph(_CallState).add_node("call", call).add_edge(START, "call").compile()
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream({}, stream_mode=["messages", "values"]):
        if mode == "values":
            final = chunk
    return final["reply"]


def call(server: FakeOpenAIServer, reply: Reply, *, streamed: bool, structured: bool = False,
         **settings: Any) -> ModelReply:
    """One model call answered with ``reply``; streamed: from a graph streaming ``messages``, as a client does."""
    server.script = lambda body: reply
    profile = build_profiles(Context(**settings), server.base_url, "fake-model").system1
    kwargs: dict[str, Any] = {}
    if structured:
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}

    async def once() -> ModelReply:
        try:
            return await _acall(profile, messages_for(profile, None, "x"), streamed=streamed, **kwargs)
        finally:
            await aclose_chat_models()

    try:
        return asyncio.run(once())
    finally:
        assert bool(server.requests[-1].get("stream")) is streamed  # the path under test was taken


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


STREAMED = pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])


# --- item 3: a cut-off reply is never a finished step ----------------------------------------------------------


UNFINISHED = {
    "cut-stream": Reply(content=SOLUTION, cut_stream=True),
    "no-finish-reason": Reply(content=SOLUTION, finish_reason=None),
    "choices-empty": Reply(content=SOLUTION, choices="empty"),
    "choices-null": Reply(content=SOLUTION, choices="null"),
}


@STREAMED
@pytest.mark.parametrize("structured", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("fault", list(UNFINISHED))
def test_a_reply_that_is_not_finished_is_a_retryable_endpoint_error(server, fault, streamed, structured) -> None:
    if fault == "cut-stream" and not streamed:
        pytest.skip("a body cut half way is drop-mid-response (test_http_client.py)")
    with pytest.raises(EndpointError) as info:
        call(server, UNFINISHED[fault], streamed=streamed, structured=structured)
    error = info.value
    assert error.retryable and server.base_url in str(error)
    expected = "has no choices" if fault.startswith("choices") and not streamed else "without a finish reason"
    assert expected in error.reason




@STREAMED
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # pydantic, dumping openai's chunk
@pytest.mark.parametrize("count", [-3, "many", float("nan"), 2.5], ids=["negative", "string", "nan", "fraction"])
def test_usage_that_is_not_a_token_count_is_an_endpoint_error(server, count, streamed) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": 9}
    with pytest.raises(EndpointError, match=r"usage\.completion_tokens is .* not a token count") as info:
        call(server, Reply(content="one two", usage=usage), streamed=streamed)
    assert not info.value.retryable  # the server counts this way every time: the run stops, resumably

    bad_prompt = {"prompt_tokens": -1, "completion_tokens": 2, "total_tokens": 1}
    with pytest.raises(EndpointError, match=r"usage\.prompt_tokens is -1"):
        call(server, Reply(content="one two", usage=bad_prompt), streamed=streamed)


@STREAMED
@pytest.mark.parametrize("usage", [None, {"completion_tokens": 3}, {"prompt_tokens": 4}],
                         ids=["missing", "no-prompt-tokens", "no-completion-tokens"])
def test_a_reply_without_usage_is_counted_from_its_text_within_its_budget(server, usage, streamed) -> None:
    reply = call(server, Reply(content="one two three", usage=usage), streamed=streamed)
    assert reply.content == "one two three" and reply.usage_estimated
    assert reply.completion_tokens == len(b"one two three")  # bytes: no tokenizer makes more tokens than that
    assert reply.prompt_tokens > 0
    assert "usage_missing→counted 13 completion tokens" in (reply.fit_note() or "")

    long = call(server, Reply(content="word " * 200, usage=None), streamed=streamed, system1_max_tokens=64)
    assert long.completion_tokens == 64  # at most the budget sent: the server cannot have made more

    reported = call(server, Reply(content="one two three"), streamed=streamed)
    assert (reported.completion_tokens, reported.usage_estimated, reported.fit_note()) == (3, False, None)


def solve_streaming_messages(graph: Any, graph_input: dict[str, Any] | None, context: Context,
                             config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``graph`` as a client streaming ``messages`` does (every model call then streams); the last values."""
    final: dict[str, Any] = {}
    for mode, chunk in graph.stream(graph_input, context=context, config=config or run_config(),
                                    stream_mode=["messages", "values"]):
        if mode == "values":
            final = chunk
    return final


def test_a_cut_off_stream_is_retried_then_the_run_fails_resumably(server) -> None:
    """Before: the half solution "Working for " was saved as a finished step and the run ended success."""

    def cut_system2(body):
        if stage_of(body) == "system2":
            return Reply(content=SOLUTION, cut_stream=True)
        return scale_script(body)

    server.script = cut_system2
    graph = compile_scale_graph(checkpointer=InMemorySaver())
    config = run_config(thread_id="cut")
    context = Context(base_url=server.base_url, candidates=1)
    with pytest.raises(EndpointError, match="without a finish reason"):
        solve_streaming_messages(graph, {"problem": PROBLEM}, context, config)
    assert server.stages().count("system2") == 4  # TRANSPORT_RETRY: 1 + 3 retries
    state = graph.get_state(config)
    assert state.next == ("solve_deep",)  # resumable: the step is still to do
    assert [s["mode"] for s in state.values["steps"]] == ["system1"]  # no half step saved

    server.script = scale_script
    final = solve_streaming_messages(graph, None, context, config)
    assert final["answer"] == "20" and final["steps"][-1]["solution"] == SOLUTION
    assert server.stages().count("system2") == 5  # asked once more on resume


def cut_once(is_solver, cuts: list[str]):
    """A script whose first reply to each distinct solver request is a stream cut half way (logged in ``cuts``)."""
    seen: set[str] = set()
    lock = threading.Lock()

    def script(body):
        key = json.dumps(body["messages"])
        with lock:
            first = is_solver(body) and key not in seen
            seen.add(key)
            if first:
                cuts.append(stage_of(body))
        base = scale_script(body) if stage_of(body) != "other" else Reply(content=f"so {SOLUTION}")
        return Reply(content=base.content, cut_stream=True) if first else base

    return script


@pytest.mark.parametrize("name", ["scale", "cot", "majority", "inftythink"])
def test_every_graph_retries_a_cut_off_stream_and_keeps_only_the_full_reply(server, name) -> None:
    graph, solutions = {
        "scale": (scale_graph, lambda out: [s["solution"] for s in out["steps"]]),
        "cot": (cot, lambda out: [s["solution"] for s in out["samples"]]),
        "majority": (majority, lambda out: [s["solution"] for s in out["samples"]]),
        "inftythink": (inftythink, lambda out: [r["solution"] for r in out["rounds"]]),
    }[name]
    cuts: list[str] = []
    server.script = cut_once(lambda body: stage_of(body) in {"system1", "system2", "other"}, cuts)
    context = (Context(base_url=server.base_url, candidates=1) if name == "scale"
               else BaselineContext(base_url=server.base_url, samples=2, rounds=2))
    out = solve_streaming_messages(graph, {"problem": PROBLEM}, context)
    assert out["answer"] == "20"
    assert all(text.endswith("\\boxed{20}") or text.endswith("\\boxed{10}") for text in solutions(out))
    assert cuts  # each solver request was cut once, then asked again by the node's retry policy
    assert all(b.get("stream") for b in server.requests)


def test_the_token_budget_holds_when_the_server_reports_no_usage(server) -> None:
    """Before: no usage counted as 0 tokens, so max_tokens_per_problem never stopped a run."""
    server.script = lambda body: Reply(content=scale_script(body).content, usage=None)
    context = Context(base_url=server.base_url, candidates=1, max_tokens_per_problem=140)
    out = solve_streaming_messages(scale_graph, {"problem": PROBLEM}, context)
    used = sum(u["completion_tokens"] for u in out["usage"].values())
    assert out["status"] == "budget_exhausted" and used >= 140, (out["status"], used)
    assert len(out["steps"]) == 1 and "usage_missing" in out["steps"][0]["fallback"]


def test_usage_that_is_not_a_count_stops_the_run_without_retrying(server) -> None:
    def negative_solve(body):
        reply = scale_script(body)
        if stage_of(body) == "system1":
            reply.usage = {"prompt_tokens": 9, "completion_tokens": -500, "total_tokens": -491}
        return reply

    server.script = negative_solve
    with pytest.raises(EndpointError, match=r"usage\.completion_tokens is -500"):
        solve_streaming_messages(scale_graph, {"problem": PROBLEM}, Context(base_url=server.base_url, candidates=1))
    assert server.stages().count("system1") == 1


# --- item 4: Retry-After and the whole-reply deadline ------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_a_date_and_bounded() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert client.retry_after({"retry-after": "2"}, now) == 2.0
    assert client.retry_after({"retry-after": "1.5"}, now) == 1.5
    assert client.retry_after({"retry-after": format_datetime(now + timedelta(seconds=10), usegmt=True)},
                              now) == 10.0
    assert client.retry_after({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
    assert client.retry_after({"retry-after": "86400"}, now) == client.MAX_RETRY_AFTER
    for value in ("0", "-1", "soon", "nan", "inf", ""):
        assert client.retry_after({"retry-after": value}, now) is None, value
    assert client.retry_after({"retry-after": format_datetime(now - timedelta(seconds=5), usegmt=True)}, now) is None
    assert client.retry_after({}, now) is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_waited_before_the_error_is_raised(server, status) -> None:
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"Retry-After: waited 1\.2 s") as info:
        call(server, Reply(status=status, retry_after="1.2"), streamed=False)
    assert time.monotonic() - started >= 1.2
    assert info.value.retryable and info.value.retry_after == 1.2


def test_retry_after_is_bounded_and_only_honoured_on_429_and_503(server, monkeypatch) -> None:
    monkeypatch.setattr(client, "MAX_RETRY_AFTER", 0.3)
    started = time.monotonic()
    with pytest.raises(EndpointError) as info:
        call(server, Reply(status=429, retry_after="3600"), streamed=False)
    assert info.value.retry_after == 0.3 and 0.3 <= time.monotonic() - started < 2

    started = time.monotonic()
    with pytest.raises(EndpointError) as info:
        call(server, Reply(status=500, retry_after="5"), streamed=False)
    assert info.value.retry_after is None and time.monotonic() - started < 2


def test_the_request_slot_is_free_while_retry_after_is_waited(server) -> None:
    def script(body):
        if "first" in json.dumps(body["messages"]):
            return Reply(status=429, retry_after="2")
        return Reply(content="ok")

    server.script = script
    profile = build_profiles(Context(max_concurrent_requests=1), server.base_url, "fake-model").system1

    async def both() -> float:
        async def second() -> float:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await acall_model(profile, messages_for(profile, None, "second"))
            return time.monotonic() - started

        first = asyncio.create_task(acall_model(profile, messages_for(profile, None, "first")))
        took = await second()
        with pytest.raises(EndpointError, match="429"):
            await first
        await aclose_chat_models()
        return took

    assert asyncio.run(both()) < 1.0  # not queued behind the 2 s wait of the first request


def test_the_node_retry_comes_no_sooner_than_retry_after(server) -> None:
    """Before: the node policy's own backoff (1 s + up to 1 s jitter) decided; the server asked for 3 s."""
    arrivals: list[float] = []
    lock = threading.Lock()

    def script(body):
        if stage_of(body) != "system2":
            return scale_script(body)
        with lock:
            arrivals.append(time.monotonic())
            first = len(arrivals) == 1
        return Reply(status=503, retry_after="3") if first else scale_script(body)

    server.script = script
    out = solve_streaming_messages(scale_graph, {"problem": PROBLEM}, Context(base_url=server.base_url, candidates=1))
    assert out["answer"] == "20" and len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 3.0


@STREAMED
def test_request_timeout_is_a_deadline_for_the_whole_reply(server, streamed) -> None:
    """Before: each byte reset the read timeout, so a reply trickled a byte at a time outlasted it many times."""
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"timed out after 1 s") as info:
        call(server, Reply(content=SOLUTION, trickle=0.02), streamed=streamed, request_timeout=1)
    assert info.value.retryable and time.monotonic() - started < 2.5

    quick = call(server, Reply(content=SOLUTION, trickle=0.0005), streamed=streamed, request_timeout=5)
    assert quick.content == SOLUTION

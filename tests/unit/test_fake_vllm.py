"""The vLLM-like fake (``FakeVLLMServer``), through real HTTP: model listing, /tokenize, Qwen3 thinking, context
overflow, streaming, and ``stage_of`` with the thinking flag."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from scale_graph import prompts
from scale_graph.testing import (
    GENERATION_PROMPT_TOKENS,
    TEMPLATE_TOKENS_PER_MESSAGE,
    THINKING_OFF_TOKENS,
    VLLM_MAX_MODEL_LEN,
    VLLM_MODEL,
    FakeVLLMServer,
    Reply,
    prompt_token_ids,
    scale_script,
    stage_of,
)

MODEL = "Qwen/Qwen3-32B"
MESSAGES = [{"role": "system", "content": "You are a careful mathematician."},
            {"role": "user", "content": "What is 10 + 20?\n\nAnswer   briefly."}]
CONTENT = "The sum is \\boxed{30}."
OFF = {"enable_thinking": False}
ON = {"enable_thinking": True}


def answer(body: dict) -> Reply:
    return Reply(content=CONTENT)


@pytest.fixture
def server():
    with FakeVLLMServer(answer) as srv:
        yield srv


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def chat(server, **body) -> httpx.Response:
    return httpx.post(f"{server.base_url}/chat/completions", json={"model": MODEL, "messages": MESSAGES, **body})


def overflow_message(total: int, prompt: int, completion: int, limit: int = VLLM_MAX_MODEL_LEN) -> str:
    return (f"This model's maximum context length is {limit} tokens. However, you requested {total} tokens "
            f"({prompt} in the messages, {completion} in the completion). Please reduce the length of the messages "
            "or completion.")


# --- /v1/models ------------------------------------------------------------------------------------------------

def test_models_lists_the_model_with_vllms_fields(server) -> None:
    listing = httpx.get(f"{server.base_url}/models").json()
    assert listing["object"] == "list" and len(listing["data"]) == 1
    card = listing["data"][0]
    assert card["id"] == VLLM_MODEL == MODEL
    assert card["max_model_len"] == VLLM_MAX_MODEL_LEN == 40960
    assert card["owned_by"] == "vllm" and card["root"] == MODEL and card["object"] == "model"


def test_models_reports_the_configured_model_and_length(client) -> None:
    with FakeVLLMServer(model="Qwen/Qwen3-8B", max_model_len=8192) as srv:
        card = httpx.get(f"{srv.base_url}/models").json()["data"][0]
    assert (card["id"], card["root"], card["max_model_len"]) == ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B", 8192)


def test_a_request_for_another_model_gets_vllms_404(server) -> None:
    response = httpx.post(f"{server.base_url}/chat/completions", json={"model": "qwen3", "messages": MESSAGES})
    assert response.status_code == 404
    assert response.json() == {"object": "error", "message": "The model `qwen3` does not exist.",
                               "type": "NotFoundError", "param": None, "code": 404}


# --- /tokenize -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [None, OFF, ON], ids=["no-kwargs", "thinking-off", "thinking-on"])
def test_tokenize_counts_what_the_chat_endpoint_reports(server, client, kwargs) -> None:
    extra = {"chat_template_kwargs": kwargs} if kwargs is not None else {}
    counted = httpx.post(server.tokenize_url, json={"model": MODEL, "messages": MESSAGES, **extra}).json()
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=100,
                                           extra_body=extra or None)
    assert counted["count"] == reply.usage.prompt_tokens == len(counted["tokens"])
    assert all(isinstance(t, int) for t in counted["tokens"])
    assert counted["max_model_len"] == VLLM_MAX_MODEL_LEN
    # the documented rule: words + per-message template + generation prompt (+ the empty think block when off)
    content_words = sum(len(m["content"].split()) for m in MESSAGES)
    expected = content_words + len(MESSAGES) * TEMPLATE_TOKENS_PER_MESSAGE + GENERATION_PROMPT_TOKENS
    assert counted["count"] == expected + (THINKING_OFF_TOKENS if kwargs == OFF else 0)
    # /tokenize requests are logged apart from chat requests
    assert server.tokenize_requests == [{"model": MODEL, "messages": MESSAGES, **extra}]
    assert len(server.requests) == 1 and "messages" in server.requests[0]


def test_tokenize_is_deterministic_and_follows_add_generation_prompt(server) -> None:
    def count(**body) -> dict:
        return httpx.post(server.tokenize_url, json={"model": MODEL, "messages": MESSAGES, **body}).json()

    assert count() == count()
    assert count(add_generation_prompt=False)["count"] == count()["count"] - GENERATION_PROMPT_TOKENS
    assert count()["tokens"] == prompt_token_ids({"messages": MESSAGES})


def test_tokenize_completion_form_counts_words(server) -> None:
    counted = httpx.post(server.tokenize_url, json={"model": MODEL, "prompt": "one two  three\nfour"}).json()
    assert counted["count"] == 4 == len(counted["tokens"])
    assert counted["max_model_len"] == VLLM_MAX_MODEL_LEN


def test_tokenize_is_served_at_the_root_only(server) -> None:
    assert httpx.post(f"{server.base_url}/tokenize", json={"model": MODEL, "prompt": "x"}).status_code == 404
    assert server.tokenize_requests == []


# --- Qwen3 thinking -----------------------------------------------------------------------------------------

def test_thinking_is_on_by_default_with_a_default_reasoning(server, client) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=1000)
    message = reply.choices[0].message.model_dump()
    assert len(message["reasoning_content"].split()) == server.reasoning_words == 50
    assert message["content"] == CONTENT and reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 50 + len(CONTENT.split())  # the reasoning counts


def test_the_scripts_reasoning_is_used_and_counted(server, client) -> None:
    server.script = lambda body: Reply(content=CONTENT, reasoning="first add, then check")
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=1000,
                                           extra_body={"chat_template_kwargs": ON})
    assert reply.choices[0].message.model_dump()["reasoning_content"] == "first add, then check"
    assert reply.usage.completion_tokens == 4 + 4


def test_reasoning_goes_to_the_field_the_reply_names(server) -> None:
    server.script = lambda body: Reply(content=CONTENT, reasoning="think", reasoning_field="reasoning")
    message = chat(server).json()["choices"][0]["message"]
    assert message["reasoning"] == "think" and "reasoning_content" not in message


def test_default_reasoning_length_is_configurable() -> None:
    with FakeVLLMServer(answer, reasoning_words=7) as srv:
        message = chat(srv).json()["choices"][0]["message"]
    assert len(message["reasoning_content"].split()) == 7


def test_thinking_off_gives_no_reasoning_even_if_scripted(server, client) -> None:
    server.script = lambda body: Reply(content=CONTENT, reasoning="this must not appear")
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=1000,
                                           extra_body={"chat_template_kwargs": OFF})
    message = reply.choices[0].message.model_dump()
    assert message.get("reasoning_content") is None and message["content"] == CONTENT
    assert reply.usage.completion_tokens == len(CONTENT.split())


def test_reasoning_that_eats_the_budget_leaves_no_content(server) -> None:
    body = chat(server, max_completion_tokens=10).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None  # vLLM: no </think>, so nothing is content
    assert len(choice["message"]["reasoning_content"].split()) == 10
    assert body["usage"]["completion_tokens"] == 10


def test_reasoning_that_fills_the_budget_exactly_leaves_no_content(server) -> None:
    choice = chat(server, max_completion_tokens=50).json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] is None


def test_content_after_the_reasoning_is_cut_to_what_remains(server) -> None:
    body = chat(server, max_tokens=52).json()  # the legacy field is honoured too
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "The sum"
    assert body["usage"]["completion_tokens"] == 52


def test_without_thinking_the_whole_budget_is_content(server) -> None:
    choice = chat(server, max_completion_tokens=3, chat_template_kwargs=OFF).json()["choices"][0]
    assert choice["message"]["content"] == "The sum is" and choice["finish_reason"] == "length"


def test_openai_client_sees_the_budget_eaten(client) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=5)
    assert reply.choices[0].finish_reason == "length" and not reply.choices[0].message.content


# --- context overflow --------------------------------------------------------------------------------------------

def prompt_of(tokens: int) -> list[dict]:
    """One user message whose prompt is exactly ``tokens`` tokens."""
    return [{"role": "user", "content": words(tokens - TEMPLATE_TOKENS_PER_MESSAGE - GENERATION_PROMPT_TOKENS)}]


def test_overflow_gets_vllms_exact_400_body(server) -> None:
    messages = prompt_of(1000)
    assert len(prompt_token_ids({"messages": messages})) == 1000
    response = httpx.post(f"{server.base_url}/chat/completions",
                          json={"model": MODEL, "messages": messages, "max_completion_tokens": 40000})
    assert response.status_code == 400
    assert response.json() == {
        "object": "error",
        "message": "This model's maximum context length is 40960 tokens. However, you requested 41000 tokens "
                   "(1000 in the messages, 40000 in the completion). Please reduce the length of the messages or "
                   "completion.",
        "type": "BadRequestError", "param": None, "code": 400}
    assert len(server.requests) == 1  # logged, though rejected


def test_overflow_raises_bad_request_in_the_openai_client(server, client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=prompt_of(1000), max_tokens=40000)
    expected = overflow_message(41000, 1000, 40000)
    assert expected in str(caught.value)
    assert caught.value.status_code == 400 and caught.value.body["message"] == expected


def test_overflow_counts_the_thinking_off_template(server) -> None:
    messages = prompt_of(1000)  # 1004 tokens with thinking off
    response = chat(server, messages=messages, max_completion_tokens=40000, chat_template_kwargs=OFF)
    assert response.json()["message"] == overflow_message(41004, 1004, 40000)


def test_a_request_that_just_fits_is_served(server) -> None:
    server.reasoning_words = 0
    response = chat(server, messages=prompt_of(1000), max_completion_tokens=39960)
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 1000


def test_a_prompt_alone_longer_than_the_context_is_rejected() -> None:
    with FakeVLLMServer(answer, max_model_len=100) as srv:
        with_budget = chat(srv, messages=prompt_of(120), max_completion_tokens=10)
        without = chat(srv, messages=prompt_of(120))
        just_under = chat(srv, messages=prompt_of(99))
    assert with_budget.status_code == without.status_code == 400
    assert with_budget.json()["message"] == overflow_message(130, 120, 10, limit=100)
    assert without.json() == {
        "object": "error", "type": "BadRequestError", "param": None, "code": 400,
        "message": "This model's maximum context length is 100 tokens. However, you requested 120 tokens in the "
                   "messages, Please reduce the length of the messages."}
    # no completion size given: vLLM allows max_model_len - prompt (here 1 token, all of it reasoning)
    assert just_under.status_code == 200
    assert just_under.json()["usage"]["completion_tokens"] == 1


def test_scripted_errors_have_vllms_shape(server) -> None:
    server.script = lambda body: Reply(status=503)
    response = chat(server)
    assert response.status_code == 503
    assert response.json() == {"object": "error", "message": "scripted HTTP 503", "type": "BadRequestError",
                               "param": None, "code": 503}


# --- streaming -------------------------------------------------------------------------------------------------

def stream(client, **kwargs) -> tuple[str, str, str | None, object]:
    """Joined reasoning, joined content, finish reason and usage of a streamed request."""
    reasoning, content, finish, usage = "", "", None, None
    for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True}, **kwargs):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            reasoning += delta.get("reasoning_content") or ""
            content += delta.get("content") or ""
            finish = choice.finish_reason or finish
    return reasoning, content, finish, usage


def test_streaming_with_thinking_matches_the_full_reply(server, client) -> None:
    server.script = lambda body: Reply(content="so the total\nis \\boxed{30}", reasoning="add  10 and\n20")
    full = chat(server, max_completion_tokens=100).json()
    reasoning, content, finish, usage = stream(client, max_completion_tokens=100)
    assert reasoning == full["choices"][0]["message"]["reasoning_content"] == "add  10 and\n20"
    assert content == full["choices"][0]["message"]["content"] == "so the total\nis \\boxed{30}"
    assert finish == "stop"
    assert usage.completion_tokens == full["usage"]["completion_tokens"] == 4 + 5
    assert usage.prompt_tokens == full["usage"]["prompt_tokens"]
    assert all(b["stream"] for b in server.requests[1:])


def test_streaming_without_thinking_has_no_reasoning(server, client) -> None:
    server.script = lambda body: Reply(content=CONTENT, reasoning="hidden")
    reasoning, content, finish, _ = stream(client, max_completion_tokens=100,
                                           extra_body={"chat_template_kwargs": OFF})
    assert (reasoning, content, finish) == ("", CONTENT, "stop")


def test_streaming_when_reasoning_eats_the_budget(server, client) -> None:
    reasoning, content, finish, usage = stream(client, max_completion_tokens=10)
    assert len(reasoning.split()) == 10 and content == "" and finish == "length"
    assert usage.completion_tokens == 10


def test_streaming_overflow_is_a_400_before_any_event(client) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length is 40960 tokens"):
        client.chat.completions.create(model=MODEL, messages=prompt_of(1000), max_completion_tokens=40000,
                                       stream=True)


# --- stage_of and scale_script with the thinking flag -------------------------------------------------------------

def solve_body(instruction: str, thinking: bool | None = None) -> dict:
    turn = prompts.PROBLEM.format(problem="What is 10 + 20?") + prompts.SOLVE_CURRENT.format(
        number=1, subproblem="Add the numbers.", instruction=instruction)
    body: dict = {"model": MODEL, "messages": [{"role": "system", "content": prompts.SCALE_SYSTEM},
                                               {"role": "user", "content": turn}]}
    if thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": thinking}
    return body


@pytest.mark.parametrize(("instruction", "thinking", "stage"), [
    (prompts.SOLVE_DEEP, False, "system1"),
    (prompts.SOLVE_DEEP, True, "system2"),
    (prompts.SOLVE_FAST, True, "system2"),
    (prompts.SOLVE_FAST, False, "system1"),
    (prompts.SOLVE_DEEP, None, "system2"),
    (prompts.SOLVE_FAST, None, "system1"),
    ("Solve it, reasoning step by step.", True, "system2"),  # a solve turn with another instruction
    ("Solve it, reasoning step by step.", False, "system1"),
    ("Solve it, reasoning step by step.", None, "other"),
])
def test_stage_of_solve_requests_follows_the_thinking_flag(instruction, thinking, stage) -> None:
    assert stage_of(solve_body(instruction, thinking)) == stage


@pytest.mark.parametrize("thinking", [None, False, True])
def test_stage_of_control_stages_ignores_the_thinking_flag(thinking) -> None:
    problem = prompts.PROBLEM.format(problem="What is 10 + 20?")
    turns = {"decompose": prompts.DECOMPOSE_USER.format(problem="What is 10 + 20?", max_subproblems=3),
             "select": prompts.SELECT_USER.format(problem="What is 10 + 20?", count=2, candidates="1. a\n2. b"),
             "assess": prompts.ASSESS_USER.format(problem="What is 10 + 20?", earlier="", subproblem="Add.")}
    for stage, turn in turns.items():
        assert turn.startswith(problem)
        body = {"messages": [{"role": "system", "content": prompts.SCALE_SYSTEM}, {"role": "user", "content": turn}]}
        if thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": thinking}
        assert stage_of(body) == stage


def test_stage_of_a_non_scale_request_is_other() -> None:
    assert stage_of({"messages": MESSAGES, "chat_template_kwargs": ON}) == "other"


def test_scale_script_reasons_only_when_thinking_is_asked_for() -> None:
    assert scale_script(solve_body(prompts.SOLVE_DEEP, True)).reasoning
    assert scale_script(solve_body(prompts.SOLVE_DEEP, False)).reasoning is None
    assert scale_script(solve_body(prompts.SOLVE_DEEP)).reasoning is None
    assert scale_script(solve_body(prompts.SOLVE_FAST, True)).content.endswith("\\boxed{10}")


def test_a_qwen3_hybrid_exchange_through_the_fake(server, client) -> None:
    """System 1 (thinking off) and System 2 (thinking on) with the same instruction, as qwen3-hybrid asks them."""
    server.script = scale_script
    for thinking in (False, True):
        body = solve_body(prompts.SOLVE_DEEP, thinking)
        reply = client.chat.completions.create(model=MODEL, messages=body["messages"], max_completion_tokens=500,
                                               extra_body={"chat_template_kwargs": body["chat_template_kwargs"]})
        reasoning = reply.choices[0].message.model_dump().get("reasoning_content")
        assert (reasoning is not None) is thinking
        assert reply.choices[0].message.content.endswith("\\boxed{10}")
    assert server.stages() == ["system1", "system2"]
    assert [json.dumps(b["chat_template_kwargs"]) for b in server.requests] == [json.dumps(OFF), json.dumps(ON)]


def test_the_fake_can_be_served_from_a_shell() -> None:
    """``python -m scale_graph.testing vllm`` serves until interrupted (how the docs try the CLI without a GPU)."""
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-m", "scale_graph.testing", "vllm", "--max-model-len", "8192"],
                          stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            base_url = line.split("server: ", 1)[1].split(" ", 1)[0]
            card = httpx.get(f"{base_url}/models", timeout=10).json()["data"][0]
            assert card["id"] == "Qwen/Qwen3-32B" and card["max_model_len"] == 8192
        finally:
            proc.send_signal(subprocess.signal.SIGINT)
            assert proc.wait(timeout=10) == 0

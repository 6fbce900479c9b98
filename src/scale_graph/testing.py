"""Test doubles for the model: a scripted fake OpenAI-compatible HTTP server, with fault injection.

``FakeOpenAIServer`` listens on 127.0.0.1 (a free port), answers ``/v1/chat/completions`` and ``/v1/models``, and
logs every request. What it answers is decided by a *script*: a function from the request body to a
:class:`Reply`. The default script (:func:`scale_script`) recognises each SCALE stage from its prompt and answers
it plausibly, so a whole run works against it; tests wrap it to inject faults:

```python
def script(body):
    if stage_of(body) == "assess":
        return Reply(content='{"difficulty": "hard"}')
    return scale_script(body)

with FakeOpenAIServer(script) as server:
    ...  # Context(base_url=server.base_url)
    server.requests  # every request body, in arrival order
```

A :class:`Reply` can carry a status code (429, 500, 503 …), a delay, a dropped connection, or a malformed body.
Used by the unit tests (through the real HTTP client), the fault tests and the benchmarks.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from scale_graph import prompts


@dataclass
class Reply:
    """What the fake server does with one request."""

    content: str = ""
    """Assistant message content."""
    reasoning: str | None = None
    """Separate reasoning text, as vLLM's reasoning parsers return it."""
    reasoning_field: str = "reasoning_content"
    """Where it goes: ``reasoning_content`` (vLLM < 0.11) or ``reasoning`` (newer vLLM)."""
    status: int = 200
    """HTTP status; not 200 → an OpenAI-style error body."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    drop: bool = False
    """Close the connection without answering."""
    drop_mid_response: bool = False
    """Send the status line, headers and half of the body, then close the connection."""
    malformed: bool = False
    """Answer 200 with a body that is not JSON."""
    finish_reason: str = "stop"
    completion_tokens: int | None = None
    """Reported completion tokens (default: a word count of content + reasoning)."""


Script = Callable[[dict[str, Any]], Reply]


def stage_of(body: dict[str, Any]) -> str:
    """Which SCALE stage sent this request: decompose, select, assess, system1, system2 or other."""
    messages = body.get("messages") or []
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    if system != prompts.SCALE_SYSTEM:
        return "other"
    task = str(messages[-1].get("content", ""))  # every stage states its task at the end of the last turn
    if task.endswith(prompts.SOLVE_DEEP):
        return "system2"
    if task.endswith(prompts.SOLVE_FAST):
        return "system1"
    last_paragraph = task.rsplit("\n\n", 1)[-1]  # a control stage's reply format
    for stage, form in (("decompose", '{"subproblems":'), ("select", '{"choice": N}'), ("assess", '{"difficulty": D}')):
        if form in last_paragraph:
            return stage
    return "other"


def current_subproblem(body: dict[str, Any]) -> str:
    """The sub-problem an assessment or solve request is about."""
    text = str(body["messages"][-1]["content"])
    if "Current sub-problem:\n" in text:  # assessment prompt
        return text.rsplit("Current sub-problem:\n", 1)[1].split("\n\n", 1)[0].strip()
    line = text.rsplit("Current sub-problem ", 1)[1]  # solve turn: "N: text" or "N (the last one): text"
    return line.split(": ", 1)[1].split("\n", 1)[0].strip()


def earlier_solutions(body: dict[str, Any]) -> int:
    """How many solved sub-problems a solve request carries (one assistant turn each)."""
    return sum(m.get("role") == "assistant" for m in body.get("messages") or [])


def user_text(body: dict[str, Any]) -> str:
    """Every user turn of a request, joined, the last one last (a later solve turn does not repeat P)."""
    return "\n\n".join(str(m.get("content", "")) for m in body.get("messages") or [] if m.get("role") == "user")


def scale_script(body: dict[str, Any]) -> Reply:
    """A plausible answer for each SCALE stage: 2 sub-problems, difficulties 0.1 and 0.9, boxed solutions."""
    stage = stage_of(body)
    if stage == "decompose":
        return Reply(content=json.dumps({"subproblems": [
            "Find the first quantity.", "Combine the quantities and give the final answer."]}))
    if stage == "select":
        return Reply(content='{"choice": 1}')
    if stage == "assess":
        current = current_subproblem(body)
        return Reply(content='{"difficulty": 0.9}' if "final answer" in current else '{"difficulty": 0.1}')
    if stage in {"system1", "system2"}:
        number = earlier_solutions(body) + 1
        return Reply(content=f"Working for step {number}. \\boxed{{{number * 10}}}")
    return Reply(content="ok")


class _QuietServer(ThreadingHTTPServer):
    """Prints no traceback when a client goes away mid-reply (a killed server, a client timeout): tests cause it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError, …
            super().handle_error(request, client_address)


@dataclass
class FakeOpenAIServer:
    """A scripted OpenAI-compatible chat server on 127.0.0.1 that logs every request."""

    script: Script = scale_script
    model: str = "fake-model"
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL to give a client."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stages(self) -> list[str]:
        """The stage of every logged chat request, in arrival order."""
        with self._lock:
            return [stage_of(b) for b in self.requests]

    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    body = {"object": "list", "data": [{"id": fake.model, "object": "model"}]}
                    self._send(200, json.dumps(body).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, b'{"error": {"message": "invalid JSON"}}')
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                with fake._lock:
                    fake.requests.append(body)
                reply = fake.script(body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.malformed:
                    self._send(200, b'{"choices": [ this is not json')
                    return
                if reply.drop_mid_response:
                    payload = json.dumps(completion(body, reply, fake.model)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.status != 200:
                    err = {"error": {"message": f"scripted HTTP {reply.status}", "type": "fake", "code": reply.status}}
                    self._send(reply.status, json.dumps(err).encode())
                    return
                if body.get("stream"):
                    self._stream(body, reply)
                    return
                self._send(200, json.dumps(completion(body, reply, fake.model)).encode())

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                """Server-sent events: reasoning then content one word at a time, then usage, then [DONE]."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in stream_chunks(body, reply, fake.model):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-openai").start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stream_chunks(body: dict[str, Any], reply: Reply, model: str) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed ``reply`` (same text and usage as :func:`completion`)."""
    full = completion(body, reply, model)
    message, finish = full["choices"][0]["message"], full["choices"][0]["finish_reason"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": full["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if reply.reasoning:
        chunks += [chunk({reply.reasoning_field: word + " "}) for word in reply.reasoning.split(" ")]
    words = message["content"].split(" ")
    chunks += [chunk({"content": w if i == len(words) - 1 else w + " "}) for i, w in enumerate(words)]
    chunks.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**chunk({}), "choices": [], "usage": full["usage"]})
    return chunks


def completion(body: dict[str, Any], reply: Reply, model: str) -> dict[str, Any]:
    """An OpenAI chat-completion body for ``reply``, honouring ``max_completion_tokens``/``max_tokens``."""
    content = reply.content
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    words = content.split(" ")
    finish = reply.finish_reason
    if isinstance(limit, int) and len(words) > limit:  # one "token" per word: enough to test budgets
        content, finish = " ".join(words[:limit]), "length"
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = len(content.split()) + len((reply.reasoning or "").split())
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.reasoning is not None:
        message[reply.reasoning_field] = reply.reasoning
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", model),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }


# --- in-process fake chat model (unit tests: no sockets) ------------------------------------------------------


class FakeChatModels:
    """Stands in for :func:`scale_graph.models.chat_model`: every profile gets a fake chat model running ``script``.

    Each call is turned into the request body the real client would send (model, messages, budget, sampling,
    extra body, response format) and logged in ``calls``, so tests can assert prompts, routing and call counts.
    A reply with a non-200 status, ``drop`` or ``malformed`` raises the error the OpenAI client would raise.

    ```python
    fakes = FakeChatModels(scale_script)
    monkeypatch.setattr(scale_graph.models, "chat_model", fakes)
    ```
    """

    def __init__(self, script: Script = scale_script) -> None:
        self.script = script
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        """The most calls that were running at the same time."""
        self._lock = threading.Lock()

    def __call__(self, profile: Any) -> Any:
        """A fake chat model for ``profile``."""
        return _make_fake_chat_model(self, profile)

    def stages(self) -> list[str]:
        """The stage of every call, in call order."""
        with self._lock:
            return [stage_of(b) for b in self.calls]

    def record(self, body: dict[str, Any]) -> Reply:
        """Log the body and run the script on it."""
        with self._lock:
            self.calls.append(body)
        return self.script(body)

    def enter(self) -> None:
        """A call starts (for ``max_in_flight``)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        """A call ends."""
        with self._lock:
            self.in_flight -= 1


def _make_fake_chat_model(fakes: FakeChatModels, profile: Any) -> Any:
    import httpx
    import openai
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    roles = {"system": "system", "human": "user", "ai": "assistant"}

    class FakeChatModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "scale-fake"

        def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            body: dict[str, Any] = {
                "model": profile.model,
                "messages": [{"role": roles.get(m.type, m.type), "content": m.content} for m in messages],
                "max_completion_tokens": profile.max_tokens,
                "temperature": profile.temperature,
                "top_p": profile.top_p,
                **profile.body_extras(),
                **kwargs,
            }
            reply = fakes.record(body)
            fakes.enter()
            try:
                if reply.delay:
                    time.sleep(reply.delay)
            finally:
                fakes.leave()
            request = httpx.Request("POST", f"{profile.base_url}/chat/completions")
            if reply.drop or reply.drop_mid_response:
                raise openai.APIConnectionError(request=request)
            if reply.malformed:
                raise ValueError("Unexpected response type from OpenAI-compatible endpoint")
            if reply.status != 200:
                response = httpx.Response(reply.status, request=request)
                raise openai.APIStatusError(f"scripted HTTP {reply.status}", response=response, body=None)
            data = completion(body, reply, profile.model)
            choice, usage = data["choices"][0], data["usage"]
            msg = AIMessage(
                content=choice["message"]["content"],
                additional_kwargs=({"reasoning_content": reply.reasoning} if reply.reasoning else {}),
                response_metadata={"finish_reason": choice["finish_reason"], "model_name": profile.model},
                usage_metadata={"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                                "total_tokens": usage["total_tokens"], "input_token_details": {"cache_read": 0}},
            )
            return ChatResult(generations=[ChatGeneration(message=msg)])

    return FakeChatModel()

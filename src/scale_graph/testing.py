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

A :class:`Reply` can carry a status code (429, 500, 503 …, with a ``Retry-After``), a delay, a dropped connection, a
malformed body, no finish reason, empty or null ``choices``, missing or bad ``usage``, a stream cut off half way, or
a body trickled a byte at a time.
Used by the unit tests (through the real HTTP client), the fault tests and the benchmarks.

``FakeVLLMServer`` is the same server behaving like production: vLLM serving a Qwen3 hybrid model
(``vllm serve Qwen/Qwen3-32B --reasoning-parser qwen3 --max-model-len 40960``). On top of the above it

- lists the model with vLLM's ``max_model_len``, ``owned_by`` and ``root`` fields;
- answers ``POST /tokenize`` (at the server root, as vLLM does), counting exactly as the chat endpoint's
  ``usage.prompt_tokens`` (see :func:`prompt_token_ids`), and logs those requests in ``tokenize_requests``;
- thinks unless ``chat_template_kwargs.enable_thinking`` is false: the reasoning (the reply's, else a default
  of ``reasoning_words`` words) comes back in ``message.reasoning_content``, and counts toward the completion
  tokens and the completion limit (reasoning that fills the budget: content ``null``, ``finish_reason: "length"``);
- rejects a request whose prompt plus requested completion exceeds ``max_model_len`` with vLLM's HTTP 400 body,
  and a request for another model with vLLM's 404.

```python
with FakeVLLMServer(max_model_len=8192) as server:  # model "Qwen/Qwen3-32B"
    ...  # Context(base_url=server.base_url, preset="qwen3-hybrid")
    server.requests           # every chat request body
    server.tokenize_requests  # every /tokenize request body
    server.tokenize_url       # http://127.0.0.1:<port>/tokenize
```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast

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
    finish_reason: str | None = "stop"
    """None: a reply without a finish reason (streamed: the last chunk says none)."""
    completion_tokens: int | None = None
    """Reported completion tokens (default: a word count of content + reasoning)."""
    choices: Literal["empty", "null"] | None = None
    """HTTP fakes: answer with ``"choices": []`` (``"empty"``) or ``"choices": null`` (``"null"``); streamed,
    every chunk carries them so."""
    usage: Any = "counted"
    """HTTP fakes: the usage to report. ``"counted"``: the word counts; None: no usage at all; a dict: sent as is
    (e.g. ``{"prompt_tokens": 5, "completion_tokens": -3, "total_tokens": 2}``)."""
    retry_after: str | None = None
    """HTTP fakes: a ``Retry-After`` header on the response (with ``status`` 429 or 503)."""
    cut_stream: bool = False
    """HTTP fakes, streamed: send the first half of the deltas, then close the connection (no finish reason, no
    usage, no ``[DONE]``)."""
    trickle: float = 0.0
    """HTTP fakes: send the response body one byte at a time, this many seconds apart."""


Script = Callable[[dict[str, Any]], Reply]


def thinking_flag(body: dict[str, Any]) -> bool | None:
    """``chat_template_kwargs.enable_thinking`` of a request body when it is set to a boolean, else None."""
    kwargs = body.get("chat_template_kwargs")
    flag = kwargs.get("enable_thinking") if isinstance(kwargs, dict) else None
    return flag if isinstance(flag, bool) else None


_SOLVE_LINE = re.compile("^" + re.escape(prompts.SOLVE_CURRENT.split("{number}", 1)[0]) + r"\d", re.MULTILINE)
"""The "Current sub-problem N…" line that every solve turn carries, whatever its mode instruction."""


def stage_of(body: dict[str, Any]) -> str:
    """Which SCALE stage sent this request: decompose, select, assess, system1, system2 or other.

    The control stages are told apart by the reply format their turn asks for (its last paragraph). A solve
    request is System 1 or System 2 by its thinking flag when it sets one (``enable_thinking`` false or true:
    the ``qwen3-hybrid`` preset may ask both modes with the same instruction), else by its mode instruction
    (``prompts.SOLVE_FAST`` or ``prompts.SOLVE_DEEP``) at the end of the last turn.
    """
    messages = body.get("messages") or []
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    if system != prompts.SCALE_SYSTEM:
        return "other"
    task = str(messages[-1].get("content", ""))  # every stage states its task at the end of the last turn
    last_paragraph = task.rsplit("\n\n", 1)[-1]  # a control stage's reply format
    for stage, form in (("decompose", '{"subproblems":'), ("select", '{"choice": N}'), ("assess", '{"difficulty": D}')):
        if form in last_paragraph:
            return stage
    deep, fast = task.endswith(prompts.SOLVE_DEEP), task.endswith(prompts.SOLVE_FAST)
    if not (deep or fast or _SOLVE_LINE.search(task)):
        return "other"
    thinking = thinking_flag(body)
    if thinking is not None:
        return "system2" if thinking else "system1"
    return "system2" if deep else "system1" if fast else "other"


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
    """A plausible answer for each SCALE stage: 2 sub-problems, difficulties 0.1 and 0.9, boxed solutions.

    A solve request with ``enable_thinking`` true also gets a short reasoning text (one line, 7 words).
    """
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
        reasoning = f"Step {number}: add the numbers, then check." if thinking_flag(body) else None
        return Reply(content=f"Working for step {number}. \\boxed{{{number * 10}}}", reasoning=reasoning)
    return Reply(content="ok")


class _QuietServer(ThreadingHTTPServer):
    """Prints no traceback when a client goes away mid-reply (a killed server, a client timeout): tests cause it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError, …
            super().handle_error(request, client_address)


@dataclass
class FakeOpenAIServer:
    """A scripted OpenAI-compatible chat server on 127.0.0.1 that logs every request.

    The HTTP handler is shared with :class:`FakeVLLMServer`, which changes what the server answers through the
    hooks below (:meth:`model_card`, :meth:`route_post`, :meth:`validate`, :meth:`render`, :meth:`stream`,
    :meth:`error_body`).
    """

    script: Script = scale_script
    model: str = "fake-model"
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every chat request body, in arrival order."""
    port: int = 0
    """The port to listen on (0: a free one)."""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL to give a client."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``, without ``/v1``."""
        assert self._server is not None, "server not started"
        host, port = cast(tuple[str, int], self._server.server_address[:2])  # AF_INET: (IP string, port)
        return f"http://{host}:{port}"

    def stages(self) -> list[str]:
        """The stage of every logged chat request, in arrival order."""
        with self._lock:
            return [stage_of(b) for b in self.requests]

    # --- hooks: what the server answers ---------------------------------------------------------------------

    def model_card(self) -> dict[str, Any]:
        """The served model's entry in ``GET /v1/models``."""
        return {"id": self.model, "object": "model"}

    def route_post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Status and JSON body for a POST to ``path`` other than chat completions; None: not served (404)."""
        return None

    def validate(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Status and JSON body rejecting a logged chat request before the script sees it; None: accepted."""
        return None

    def render(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The chat-completion body answering ``body`` with ``reply``."""
        return completion(body, reply, self.model)

    def stream(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` events answering a streaming ``body`` with ``reply``."""
        return stream_chunks(body, reply, self.model)

    def error_body(self, status: int, message: str, kind: str = "fake") -> dict[str, Any]:
        """An error response body (OpenAI's shape)."""
        return {"error": {"message": message, "type": kind, "code": status}}

    # --- serving --------------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: bytes, content_type: str = "application/json", *,
                      headers: dict[str, str] | None = None, trickle: float = 0.0) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self._write(payload, trickle)

            def _send_json(self, status: int, body: dict[str, Any], **options: Any) -> None:
                self._send(status, json.dumps(body).encode(), **options)

            def _write(self, data: bytes, trickle: float) -> None:
                """Write ``data`` at once, or one byte every ``trickle`` seconds."""
                if not trickle:
                    self.wfile.write(data)
                    return
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(trickle)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send_json(200, {"object": "list", "data": [fake.model_card()]})
                else:
                    self._send_json(404, fake.error_body(404, "not found", "NotFoundError"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send_json(400, fake.error_body(400, "invalid JSON", "BadRequestError"))
                    return
                path = self.path.split("?", 1)[0].rstrip("/")
                routed = fake.route_post(path, body)
                if routed is not None:
                    self._send_json(*routed)
                    return
                if not path.endswith("/chat/completions"):
                    self._send_json(404, fake.error_body(404, "not found", "NotFoundError"))
                    return
                with fake._lock:
                    fake.requests.append(body)
                rejected = fake.validate(body)
                if rejected is not None:
                    self._send_json(*rejected)
                    return
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
                    payload = json.dumps(fake.render(body, reply)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else None
                if reply.status != 200:
                    self._send_json(reply.status, fake.error_body(reply.status, f"scripted HTTP {reply.status}"),
                                    headers=headers, trickle=reply.trickle)
                    return
                if body.get("stream"):
                    self._stream(body, reply)
                    return
                self._send_json(200, with_reply_faults(fake.render(body, reply), reply), headers=headers,
                                trickle=reply.trickle)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                """Server-sent events: reasoning then content a word at a time, then usage, then [DONE].

                ``reply.cut_stream``: the first half of the deltas, then the connection closes.
                """
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunks = [with_reply_faults(c, reply) for c in fake.stream(body, reply)]
                chunks = [c for c in chunks if c is not None]
                if reply.cut_stream:
                    deltas = [c for c in chunks if not c.get("usage") and not any(
                        (choice or {}).get("finish_reason") for choice in c.get("choices") or [])]
                    chunks = deltas[: max(1, len(deltas) // 2)]
                for chunk in chunks:
                    self._write(f"data: {json.dumps(chunk)}\n\n".encode(), reply.trickle)
                    self.wfile.flush()
                if not reply.cut_stream:
                    self._write(b"data: [DONE]\n\n", reply.trickle)

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},  # stop() in 50 ms
                         daemon=True, name="fake-openai").start()
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


def stream_chunks(body: dict[str, Any], reply: Reply, model: str, full: dict[str, Any] | None = None, *,
                  exact: bool = False) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed ``reply``: same text and usage as the full reply.

    Args:
        body: The request body (``stream_options.include_usage`` adds a final usage chunk).
        reply: The scripted reply.
        model: The served model's name.
        full: The non-streamed completion body to stream (default: :func:`completion`'s).
        exact: Split the texts so that the deltas join back into exactly the full reply's texts. Otherwise every
            reasoning word is streamed with a space after it, as this fake always did.

    """
    full = full or completion(body, reply, model)
    message, finish = full["choices"][0]["message"], full["choices"][0]["finish_reason"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"], "model": full["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    reasoning = message.get(reply.reasoning_field)
    if reasoning:
        pieces = _pieces(reasoning) if exact else [word + " " for word in reasoning.split(" ")]
        chunks += [chunk({reply.reasoning_field: piece}) for piece in pieces]
    content = message.get("content")
    if content is not None:
        if exact:
            pieces = _pieces(content)
        else:
            words = content.split(" ")
            pieces = [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]
        chunks += [chunk({"content": piece}) for piece in pieces]
    chunks.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**chunk({}), "choices": [], "usage": full["usage"]})
    return chunks


def with_reply_faults(data: dict[str, Any], reply: Reply) -> Any:
    """A completion body or stream chunk with ``reply.choices`` and ``reply.usage`` applied.

    A stream's usage chunk becomes None when the reply reports no usage (the caller leaves it out).
    """
    data = dict(data)
    if reply.choices is not None and "choices" in data:
        data["choices"] = [] if reply.choices == "empty" else None
    if reply.usage != "counted" and "usage" in data:
        if reply.usage is None:
            if data.get("object") == "chat.completion.chunk":
                return None
            del data["usage"]
        else:
            data["usage"] = reply.usage
    return data


def _pieces(text: str) -> list[str]:
    """``text`` cut into word-sized pieces (each with its surrounding whitespace) that join back into it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


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


# --- a vLLM-like fake: vLLM serving a Qwen3 hybrid model behind --reasoning-parser qwen3 -----------------------

VLLM_MODEL = "Qwen/Qwen3-32B"
"""The model :class:`FakeVLLMServer` serves by default (production's)."""
VLLM_MAX_MODEL_LEN = 40960
"""Its default context length (production's ``--max-model-len``)."""
VLLM_REASONING_WORDS = 50
"""Words of reasoning it generates for a thinking request whose reply has none."""

TEMPLATE_TOKENS_PER_MESSAGE = 5
"""Chat-template tokens around each message: ``<|im_start|>``, the role, ``\\n`` … ``<|im_end|>``, ``\\n``."""
GENERATION_PROMPT_TOKENS = 3
"""The generation prompt (``add_generation_prompt``, default true): ``<|im_start|>``, ``assistant``, ``\\n``."""
THINKING_OFF_TOKENS = 4
"""What Qwen3's template adds after the generation prompt when ``enable_thinking`` is false: an empty think block
(``<think>``, ``\\n\\n``, ``</think>``, ``\\n\\n``)."""

_IM_START, _IM_END, _THINK, _END_THINK, _NEWLINE, _NEWLINES = 151644, 151645, 151667, 151668, 198, 271
_DEFAULT_REASONING = ["Let", "me", "think", "about", "this", "carefully", "and", "check", "every", "step", "before",
                      "I", "answer."]


def _word_id(word: str) -> int:
    """A deterministic token id for a word (below Qwen3's special tokens)."""
    return zlib.crc32(word.encode()) % 151643


def _text(content: Any) -> str:
    """A message's text: a string, OpenAI content parts (their text joined), or nothing."""
    if content is None:
        return ""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def prompt_token_ids(body: dict[str, Any]) -> list[int]:
    """The prompt tokens :class:`FakeVLLMServer` counts for a chat or ``/tokenize`` request body.

    The rule (deterministic, the same for ``/tokenize`` and ``usage.prompt_tokens``):

    - chat form (``messages``): per message, one token per whitespace-separated word of its content plus
      :data:`TEMPLATE_TOKENS_PER_MESSAGE`; then, if ``add_generation_prompt`` (default true),
      :data:`GENERATION_PROMPT_TOKENS`, plus :data:`THINKING_OFF_TOKENS` when
      ``chat_template_kwargs.enable_thinking`` is false;
    - completion form (``prompt``): one token per word.
    """
    if "messages" not in body:
        return [_word_id(w) for w in _text(body.get("prompt")).split()]
    ids: list[int] = []
    for message in body.get("messages") or []:
        words = _text(message.get("content")).split()
        ids += [_IM_START, _word_id(str(message.get("role", ""))), _NEWLINE, *map(_word_id, words), _IM_END, _NEWLINE]
    if body.get("add_generation_prompt", True):
        ids += [_IM_START, _word_id("assistant"), _NEWLINE]
        if thinking_flag(body) is False:
            ids += [_THINK, _NEWLINES, _END_THINK, _NEWLINES]
    return ids


def _requested_tokens(body: dict[str, Any]) -> int | None:
    """The completion tokens a request asks for, as vLLM reads them (``max_completion_tokens or max_tokens``)."""
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    return requested if isinstance(requested, int) else None


def _cut(text: str, tokens: int) -> tuple[str, int, bool]:
    """``text`` cut to its first ``tokens`` words (one token per word): the kept text, its tokens, whether cut."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= tokens:
        return text, len(words), False
    return (text[: words[tokens - 1].end()] if tokens > 0 else ""), max(tokens, 0), True


@dataclass(kw_only=True)
class FakeVLLMServer(FakeOpenAIServer):
    """:class:`FakeOpenAIServer` behaving like vLLM serving a Qwen3 hybrid model with ``--reasoning-parser qwen3``.

    Args:
        script: What to answer (positional, as for :class:`FakeOpenAIServer`); ``Reply.reasoning`` is the
            thinking text, dropped when the request turns thinking off.
        model: The served model id (default :data:`VLLM_MODEL`); a request naming another model gets vLLM's 404.
        max_model_len: The context length (default :data:`VLLM_MAX_MODEL_LEN`).
        reasoning_words: Words of default reasoning for a thinking request whose reply has no reasoning
            (default :data:`VLLM_REASONING_WORDS`; 0: none).

    Attributes:
        requests: Every chat request body, in arrival order (rejected ones too).
        tokenize_requests: Every ``/tokenize`` request body, in arrival order.

    Requests are rejected, before the script sees them, as vLLM does: HTTP 400 when the prompt plus the requested
    completion (``max_completion_tokens``, else ``max_tokens``) exceeds ``max_model_len``, or when no completion
    size is requested and the prompt alone fills the context. Responses carry vLLM's fields: ``reasoning_content``
    (null when not thinking), ``tool_calls``, ``stop_reason``, and ``usage.prompt_tokens_details: null`` (vLLM
    reports cached tokens only with ``--enable-prompt-tokens-details``). Errors have vLLM's flat body
    (``{"object": "error", "message", "type", "param", "code"}``), scripted ones too.

    """

    model: str = VLLM_MODEL
    max_model_len: int = VLLM_MAX_MODEL_LEN
    reasoning_words: int = VLLM_REASONING_WORDS
    tokenize_requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokenize_url(self) -> str:
        """The ``/tokenize`` URL (at the server root, not under ``/v1``)."""
        return f"{self.root_url}/tokenize"

    def default_reasoning(self) -> str:
        """The reasoning text of a thinking request whose reply has none: ``reasoning_words`` words."""
        return " ".join(_DEFAULT_REASONING[i % len(_DEFAULT_REASONING)] for i in range(self.reasoning_words))

    def model_card(self) -> dict[str, Any]:
        """The ``/v1/models`` entry as vLLM lists it, with ``max_model_len``."""
        return {"id": self.model, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                "root": self.model, "parent": None, "max_model_len": self.max_model_len, "permission": []}

    def error_body(self, status: int, message: str, kind: str = "BadRequestError") -> dict[str, Any]:
        """An error response body in vLLM's flat shape."""
        return {"object": "error", "message": message, "type": kind, "param": None, "code": status}

    def _wrong_model(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        name = body.get("model")
        if name is not None and name != self.model:
            return 404, self.error_body(404, f"The model `{name}` does not exist.", "NotFoundError")
        return None

    def route_post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """``POST /tokenize``: vLLM's chat form (``messages``) or completion form (``prompt``)."""
        if path != "/tokenize":
            return None
        with self._lock:
            self.tokenize_requests.append(body)
        if "messages" not in body and "prompt" not in body:
            return 400, self.error_body(400, "a tokenize request needs 'messages' or 'prompt'")
        wrong = self._wrong_model(body)
        if wrong is not None:
            return wrong
        tokens = prompt_token_ids(body)
        return 200, {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens}

    def validate(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The model check and context-length check of vLLM (its messages, verbatim)."""
        wrong = self._wrong_model(body)
        if wrong is not None:
            return wrong
        prompt, requested, limit = len(prompt_token_ids(body)), _requested_tokens(body), self.max_model_len
        if requested is None and prompt >= limit:
            return 400, self.error_body(
                400, f"This model's maximum context length is {limit} tokens. However, you requested {prompt} "
                     "tokens in the messages, Please reduce the length of the messages.")
        if requested is not None and prompt + requested > limit:
            return 400, self.error_body(
                400, f"This model's maximum context length is {limit} tokens. However, you requested "
                     f"{prompt + requested} tokens ({prompt} in the messages, {requested} in the completion). "
                     "Please reduce the length of the messages or completion.")
        return None

    def render(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The completion: reasoning first (unless thinking is off), then content, within one token budget."""
        prompt = len(prompt_token_ids(body))
        requested = _requested_tokens(body)
        budget = requested if requested is not None else self.max_model_len - prompt
        reasoning: str | None = None
        if thinking_flag(body) is not False:
            reasoning = (reply.reasoning if reply.reasoning is not None else self.default_reasoning()) or None
        finish, reasoning_tokens, content_tokens = reply.finish_reason, 0, 0
        content: str | None = reply.content
        thinking_cut = False
        if reasoning is not None:
            reasoning, reasoning_tokens, thinking_cut = _cut(reasoning, budget)
            # the budget ran out inside the thinking (no </think>): everything is reasoning, no content
            thinking_cut = thinking_cut or (reasoning_tokens == budget and bool(reply.content.split()))
        if thinking_cut:
            content, finish = None, "length"
        else:
            content, content_tokens, cut = _cut(reply.content, budget - reasoning_tokens)
            if cut:
                finish = "length"
        completion_tokens = reply.completion_tokens
        if completion_tokens is None:
            completion_tokens = reasoning_tokens + content_tokens
        message: dict[str, Any] = {"role": "assistant", "content": content, reply.reasoning_field: reasoning,
                                   "tool_calls": []}
        return {
            "id": f"chatcmpl-{time.time_ns():x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                         "stop_reason": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                      "total_tokens": prompt + completion_tokens, "prompt_tokens_details": None},
            "prompt_logprobs": None,
        }

    def stream(self, body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
        """The same completion as :meth:`render`, streamed: reasoning deltas, then content deltas."""
        return stream_chunks(body, reply, self.model, self.render(body, reply), exact=True)

    def __enter__(self) -> FakeVLLMServer:
        self.start()
        return self


# --- in-process fake chat model (unit tests: no sockets) ------------------------------------------------------


class FakeChatModels:
    """Stands in for :func:`scale_graph.models.client.chat_model`: every profile gets a fake model running ``script``.

    Each call is turned into the request body the real client would send (model, messages, budget, sampling,
    extra body, response format) and logged in ``calls``, so tests can assert prompts, routing and call counts.
    A reply with a non-200 status, ``drop`` or ``malformed`` raises the error the OpenAI client would raise.

    ```python
    fakes = FakeChatModels(scale_script)
    monkeypatch.setattr(scale_graph.models.client, "chat_model", fakes)
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
            body = self._body(messages, kwargs)
            reply = fakes.record(body)
            fakes.enter()
            try:
                if reply.delay:
                    time.sleep(reply.delay)
            finally:
                fakes.leave()
            return self._result(body, reply)

        async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                             **kwargs: Any) -> ChatResult:
            body = self._body(messages, kwargs)
            reply = fakes.record(body)
            fakes.enter()
            try:
                if reply.delay:
                    await asyncio.sleep(reply.delay)
            finally:
                fakes.leave()
            return self._result(body, reply)

        def _body(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
            return {
                "model": profile.model,
                "messages": [{"role": roles.get(m.type, m.type), "content": m.content} for m in messages],
                "max_completion_tokens": profile.max_tokens,
                "temperature": profile.temperature,
                "top_p": profile.top_p,
                **profile.body_extras(),
                **{k: v for k, v in kwargs.items() if k != "extra_body"},
                **(kwargs.get("extra_body") or {}),  # merged into the body, as the OpenAI client does
            }

        def _result(self, body: dict[str, Any], reply: Reply) -> ChatResult:
            request = httpx.Request("POST", f"{profile.base_url}/chat/completions")
            if reply.drop or reply.drop_mid_response:
                # openai 3 types its errors with httpx2's classes; the fake hands httpx's, whose API they share.
                raise openai.APIConnectionError(request=request)  # type: ignore[arg-type]
            if reply.malformed:
                raise ValueError("Unexpected response type from OpenAI-compatible endpoint")
            if reply.status != 200:
                response = httpx.Response(reply.status, request=request)  # for httpx2's Response, as above
                raise openai.APIStatusError(f"scripted HTTP {reply.status}", response=response,  # type: ignore[arg-type]
                                            body=None)
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


def call_once(profile: Any, messages: Any) -> Any:
    """One model call (:func:`scale_graph.models.acall_model`) from sync code, on an event loop of its own.

    The loop's chat models are closed before it ends, so no connection outlives it.
    """
    from scale_graph.models import acall_model
    from scale_graph.models.chat import aclose_chat_models

    async def once() -> Any:
        try:
            return await acall_model(profile, messages)
        finally:
            await aclose_chat_models()

    return asyncio.run(once())


# --- from a shell: python -m scale_graph.testing [vllm|openai] --port N -----------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve a fake on 127.0.0.1 until interrupted, so the CLI can be tried against it from a shell.

    ``vllm``: :class:`FakeVLLMServer` (Qwen3-32B, thinking, ``max_model_len``, ``/tokenize``); ``openai``: the plain
    :class:`FakeOpenAIServer`. Both answer every SCALE stage with :func:`scale_script`.
    """
    parser = argparse.ArgumentParser(prog="python -m scale_graph.testing", description=main.__doc__)
    parser.add_argument("kind", choices=["vllm", "openai"], nargs="?", default="vllm")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--max-model-len", type=int, default=VLLM_MAX_MODEL_LEN, help="vllm: the context length")
    args = parser.parse_args(argv)
    server: FakeOpenAIServer = (FakeVLLMServer(port=args.port, max_model_len=args.max_model_len)
                                if args.kind == "vllm" else FakeOpenAIServer(port=args.port))
    serve_until_interrupted(server, lambda s: f"fake {args.kind} server: {s.base_url} (model {s.model}); Ctrl-C "
                                              "stops it")
    return 0


def serve_until_interrupted[S: FakeOpenAIServer](server: S, banner: Callable[[S], str]) -> None:
    """Start ``server``, print ``banner(server)`` and serve until Ctrl-C or SIGINT.

    The banner is made once the server listens, so it can name the URL of a server on a free port.
    """
    with server:
        print(banner(server), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    raise SystemExit(main())

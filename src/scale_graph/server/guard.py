"""The ASGI layer in front of Aegra: a start-up gate, a request-body limit, and server-owned endpoint fields.

- **Gate**: until the start-up self-check has proved that authentication is active, every request except the
  self-check's own (which carries a per-process token) gets ``503`` (a websocket is closed with 1013). So not
  one request is served by a server whose authentication turned out to be off.
- **Body limit**: a body over ``max_body_bytes`` gets ``413`` before Aegra reads it (a declared
  ``Content-Length`` is refused at once; a chunked body as soon as it grows past the limit).
- **Endpoint fields**: the model endpoint and its credentials belong to the server (``SCALE_BASE_URL``,
  ``SCALE_API_KEY``): a request whose run context sets ``base_url``, ``system2_base_url`` or ``api_key`` gets
  ``422``, so a client cannot make the server send requests (and its key) to an address of its choosing.
- **Run input**: a request that creates a run (``/runs``, ``/runs/stream``, ``/runs/wait``, ``/runs/batch``,
  ``/runs/crons``, with or without ``/threads/{id}`` in front) with an ``input`` gets ``422`` unless the input
  has a ``problem`` that :func:`scale_graph.context.check_problem` accepts (not empty or whitespace, at most
  ``MAX_PROBLEM_CHARS``, no control characters), and ``400`` when its body is not UTF-8. So bad input is refused
  at run creation, before a run exists, rather than failing later in a worker. ``input: null`` (resume or
  replay from a checkpoint) passes. A problem is only ever text for the prompts, whatever it says.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from scale_graph.context import InvalidProblem, check_problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GATE_HEADER = "x-scale-selfcheck"
"""Header carrying the gate token on the self-check's requests."""
SERVER_OWNED = frozenset({"base_url", "system2_base_url", "api_key"})
"""Context fields only the server sets."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RUN_PATHS = re.compile(r"^(/threads/[^/]+)?/runs(/stream|/wait|/batch|/crons)?/?$")
"""Paths of the requests that create runs (or crons, which create runs later)."""


class Gate:
    """Closed until :meth:`open`; the token lets the self-check through while closed."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)
        self.is_open = False

    def open(self) -> None:
        """Let every request through."""
        self.is_open = True

    def admits(self, scope: Scope) -> bool:
        """True when open, or for a request carrying the token."""
        if self.is_open:
            return True
        presented = dict(scope.get("headers") or []).get(GATE_HEADER.encode(), b"")
        return secrets.compare_digest(presented, self.token.encode())


class Guard:
    """Wraps an ASGI app with the gate, the body limit and the endpoint-field check."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, gate: Gate) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] == "websocket" and not self.gate.admits(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.gate.admits(scope):
            await respond(send, 503, "starting", "the server is verifying its authentication; retry shortly")
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive)
        if body is None:
            await respond(send, 413, "payload_too_large",
                          f"request bodies are limited to {self.max_body_bytes} bytes")
            return
        if owned := server_owned_fields(body):
            await respond(send, 422, "invalid_request",
                          f"context field(s) {', '.join(sorted(owned))} are set by the server, not by clients")
            return
        if scope["method"] == "POST" and RUN_PATHS.match(scope.get("path", "")) and (bad := bad_run_input(body)):
            status, message = bad
            await respond(send, status, "invalid_input", message)
            return
        await self.app(scope, replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it is larger than the limit (declared or received)."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then defers to the real one (for disconnects)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


def server_owned_fields(body: bytes) -> set[str]:
    """The server-owned context fields a JSON request body sets (in ``context`` or ``config.configurable``)."""
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        return set()  # not JSON: Aegra answers it
    found: set[str] = set()
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            continue
        config = item.get("config")
        for fields in (item.get("context"), config.get("configurable") if isinstance(config, dict) else None):
            if isinstance(fields, dict):
                found |= SERVER_OWNED & set(fields)
    return found


def bad_run_input(body: bytes) -> tuple[int, str] | None:
    """(HTTP status, message) when a run-creating body is not UTF-8 or carries an unusable ``input``; else None.

    A body that is not JSON at all is left to Aegra (it answers 422 itself).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return 400, f"the request body is not valid UTF-8 (byte {exc.start})"
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    for item in data if isinstance(data, list) else [data]:  # /runs/batch sends a list
        if not isinstance(item, dict) or item.get("input") is None:
            continue
        run_input = item["input"]
        if not isinstance(run_input, dict):
            return 422, f"input must be an object with a 'problem', got {type(run_input).__name__}"
        if "problem" not in run_input:
            return 422, "input has no 'problem' (the problem text to solve)"
        try:
            check_problem(run_input["problem"])
        except InvalidProblem as exc:
            return 422, f"invalid problem: {exc}"
    return None


async def respond(send: Send, status: int, error: str, message: str) -> None:
    """Send a JSON error in Aegra's shape (``{"error", "message", "details"}``)."""
    payload = json.dumps({"error": error, "message": message, "details": None}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})

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
- **Numbers**: a JSON body with ``NaN``, ``Infinity`` or a number too large for a float (``1e400``) anywhere gets
  ``422`` naming where: PostgreSQL's JSONB refuses them, and Aegra would answer 500 and drop the connection.
- **Unstorable strings**: a JSON body with U+0000 or a lone surrogate in any string gets ``422`` (JSONB cannot
  store them either).
- **Run settings**: a body's ``context`` (and the SCALE fields of ``config.configurable``) is checked with
  :func:`scale_graph.context.validate_settings` against the served graphs' context schemas (type, finite, range,
  known value; in ``context`` unknown fields too, and in ``configurable``, which also carries LangGraph's own
  keys, a near-miss of a field name), then against the operator's limits
  (:class:`~scale_graph.server.config.ServerLimits`): ``422`` ``invalid_settings`` naming the field and the
  reason, before a run or assistant exists.
- **State edits**: ``POST /threads/{id}/state`` (and a run's ``command.update``) whose ``assessments`` is not
  ``{index: difficulty}`` or assessment records gets ``422`` with
  :func:`scale_graph.state.check_assessments_edit`'s message, before anything is written (Aegra answered 500).
- **Continuing a thread**: a run on a thread (``/threads/{id}/runs``, ``/runs/stream``, ``/runs/wait``) with none
  of ``input``, ``command``, ``checkpoint``, ``checkpoint_id`` — ``runs.wait(thread_id, "scale", input=None)``,
  which continues the thread from its latest checkpoint on LangGraph's servers — is passed on with
  ``checkpoint: {"checkpoint_ns": ""}`` (the latest checkpoint), which Aegra accepts; Aegra refused it with 422.
- **``/ok``**: ``GET /ok`` answers ``{"ok": true}`` once the gate is open, as LangGraph's servers do, so the same
  probe works on both (``/health`` also checks the database).
- **Runs in flight per tenant**: a request that would create runs when its tenant already has
  ``SCALE_SERVER_TENANT_RUNS`` pending or running gets ``429`` with ``Retry-After``
  (:mod:`scale_graph.server.tenancy`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from scale_graph.context import Context
from scale_graph.server.bodies import (
    Caps,
    assessments_edit_problem,
    merged_rules,
    non_finite_at,
    owned_fields,
    parse_json,
    resume_latest,
    run_input_problem,
    settings_problem,
    unstorable_at,
)
from scale_graph.server.tenancy import RunLimit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GATE_HEADER = "x-scale-selfcheck"
"""Header carrying the gate token on the self-check's requests."""
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RUN_PATHS = re.compile(r"^(/threads/[^/]+)?/runs(/stream|/wait|/batch|/crons)?/?$")
"""Paths of the requests that create runs (or crons, which create runs later)."""
THREAD_RUN_PATHS = re.compile(r"^/threads/[^/]+/runs(/stream|/wait)?/?$")
"""Paths that create one run on a thread (where a body without input continues the thread)."""
STATE_PATHS = re.compile(r"^/threads/[^/]+/state/?$")
"""The path of a state edit (``update_state``)."""
CRON_PATHS = re.compile(r"/crons/?$")
"""Crons create their runs later: they are checked like runs but not counted against the tenant's runs."""


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
    """Wraps an ASGI app with the gate, the body limit and the checks of what clients send."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, gate: Gate, caps: Caps | None = None,
                 schemas: Iterable[type] = (Context,), runs: RunLimit | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.gate = gate
        self.caps: Caps = caps or {}
        """Context field → (the most a client may set, its variable); none: only the Context's own ranges."""
        self.rules = merged_rules(schemas)
        self.runs = runs
        """The per-tenant limit on runs in flight (None: no limit)."""

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
        if scope["method"] in {"GET", "HEAD"} and scope.get("path") == "/ok":
            await send_json(send, 200, {"ok": True})
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive)
        if body is None:
            await respond(send, 413, "payload_too_large",
                          f"request bodies are limited to {self.max_body_bytes} bytes")
            return
        creates_runs = scope["method"] == "POST" and RUN_PATHS.match(scope.get("path", "")) is not None
        try:
            data = parse_json(body.decode("utf-8")) if body.strip() else None
        except UnicodeDecodeError as exc:
            if creates_runs:
                await respond(send, 400, "invalid_input", f"the request body is not valid UTF-8 (byte {exc.start})")
                return
            data = None
        except ValueError:  # not JSON: Aegra answers it
            data = None
        if where := non_finite_at(data):
            await respond(send, 422, "invalid_request", f"JSON numbers must be finite: {where} is not")
            return
        if owned := owned_fields(data):
            await respond(send, 422, "invalid_request",
                          f"context field(s) {', '.join(sorted(owned))} are set by the server, not by clients")
            return
        if problem := settings_problem(data, self.rules, self.caps):
            await respond(send, 422, "invalid_settings", problem)
            return
        if creates_runs and (bad := run_input_problem(data)):
            status, message = bad
            await respond(send, status, "invalid_input", message)
            return
        if where := unstorable_at(data):
            await respond(send, 422, "invalid_request", f"strings cannot contain NUL or lone surrogates: {where}")
            return
        edits_state = scope["method"] == "POST" and STATE_PATHS.match(scope.get("path", "")) is not None
        if (edits_state or creates_runs) and (problem := assessments_edit_problem(data)):
            await respond(send, 422, "invalid_edit", problem)
            return
        if creates_runs and THREAD_RUN_PATHS.match(scope["path"]) and (resumed := resume_latest(data)) is not None:
            data, body = resumed, json.dumps(resumed).encode()
            scope = with_content_length(scope, len(body))
        if creates_runs and self.runs is not None and not CRON_PATHS.search(scope["path"]):
            await self._admit_runs(scope, body, data, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def aclose(self) -> None:
        """Release what the checks hold (the run counter's database connections)."""
        close = getattr(self.runs.count if self.runs is not None else None, "close", None)
        if close is not None:
            await close()

    async def _admit_runs(self, scope: Scope, body: bytes, data: Any, receive: Receive, send: Send) -> None:
        """Pass a run-creating request on if its tenant has room for its runs, else 429 with Retry-After.

        The tenant's lock is held from the count until Aegra starts its answer (the run row is committed by then).
        """
        assert self.runs is not None
        tenant = self.runs.tenant_of(dict(scope.get("headers") or []))
        if tenant is None:  # not authenticated: Aegra answers 401
            await self.app(scope, replay(body, receive), send)
            return
        wanted = len(data) if isinstance(data, list) else 1
        lock = self.runs.lock(tenant)
        await lock.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                lock.release()

        try:
            active = await self.runs.count(tenant)
            if active + wanted > self.runs.limit:
                release()
                await respond(send, 429, "too_many_runs",
                              f"{active} of your runs are in flight (pending or running) and this server allows "
                              f"{self.runs.limit} per API key (SCALE_SERVER_TENANT_RUNS); retry after "
                              f"{self.runs.retry_after} s", retry_after=self.runs.retry_after)
                return

            async def answered(message: Message) -> None:
                if message["type"] == "http.response.start":
                    release()
                await send(message)

            await self.app(scope, replay(body, receive), answered)
        finally:
            release()

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


def with_content_length(scope: Scope, length: int) -> Scope:
    """A copy of ``scope`` whose ``Content-Length`` header says ``length`` (for a rewritten body)."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


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


async def respond(send: Send, status: int, error: str, message: str, *, retry_after: int | None = None) -> None:
    """Send a JSON error in Aegra's shape (``{"error", "message", "details"}``)."""
    await send_json(send, status, {"error": error, "message": message, "details": None},
                    [(b"retry-after", str(retry_after).encode())] if retry_after is not None else [])


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``body`` as a JSON response."""
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})

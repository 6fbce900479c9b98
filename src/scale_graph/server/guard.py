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
- **Runs in flight per tenant**: a request that would create runs when its tenant already has
  ``SCALE_SERVER_TENANT_RUNS`` pending or running gets ``429`` with ``Retry-After``
  (:mod:`scale_graph.server.tenancy`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from scale_graph.context import Context
from scale_graph.problem import InvalidProblem, check_problem
from scale_graph.server.tenancy import RunLimit
from scale_graph.settings import FieldRule, InvalidSettings, field_rules

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
CRON_PATHS = re.compile(r"/crons/?$")
"""Crons create their runs later: they are checked like runs but not counted against the tenant's runs."""
Caps = Mapping[str, tuple[int, str]]
"""Context field → (the most a client may set, the variable that says so)."""


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
"""Characters PostgreSQL's JSONB cannot hold: NUL and lone surrogates (JSON can carry both as escapes)."""


class _NonFinite:
    """A number the JSON parser met that is not a finite float (``NaN``, ``Infinity``, ``1e400``)."""

    def __init__(self, text: str) -> None:
        self.text = text


def parse_json(text: str) -> Any:
    """``text`` as JSON, with every non-finite number kept as a :class:`_NonFinite` marker.

    ``ValueError`` when it is not JSON.
    """

    def number(literal: str) -> float | _NonFinite:
        value = float(literal)
        return value if math.isfinite(value) else _NonFinite(literal)

    return json.loads(text, parse_constant=_NonFinite, parse_float=number)


def non_finite_at(data: Any, path: str = "") -> str | None:
    """Where the first non-finite number in ``data`` is (``context.threshold``, ``[0].input``), else None."""
    if isinstance(data, _NonFinite):
        return f"{path or 'the body'} ({data.text})"
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(data, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in data.items())
    elif isinstance(data, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(data))
    for where, value in items:
        if found := non_finite_at(value, where):
            return found
    return None


def unstorable_at(data: Any, path: str = "") -> str | None:
    """Where the first string PostgreSQL cannot store is (U+0000 or a lone surrogate, in a value or a key)."""
    if isinstance(data, str):
        if bad := _UNSTORABLE.search(data):
            return f"{path or 'the body'} (U+{ord(bad.group()):04X})"
        return None
    items: Iterable[tuple[str, Any]] = ()
    if isinstance(data, dict):
        for key in data:
            if isinstance(key, str) and (bad := _UNSTORABLE.search(key)):
                return f"a key of {path or 'the body'} (U+{ord(bad.group()):04X})"
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in data.items())
    elif isinstance(data, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(data))
    for where, value in items:
        if found := unstorable_at(value, where):
            return found
    return None


def merged_rules(schemas: Iterable[type]) -> dict[str, FieldRule]:
    """The field rules of every served graph's context schema (a field keeps its first schema's rule)."""
    rules: dict[str, FieldRule] = {}
    for schema in schemas:
        for name, rule in field_rules(schema).items():
            rules.setdefault(name, rule)
    return rules


def settings_problem(data: Any, rules: Mapping[str, FieldRule], caps: Caps) -> str | None:
    """Why the run settings in a JSON body cannot be used, else None.

    Checked: ``context`` and ``config.configurable`` of the body, or of each item of a list (``/runs/batch``).
    """
    for index, item in enumerate(data if isinstance(data, list) else [data]):
        if not isinstance(item, dict):
            continue
        where = f"[{index}]." if isinstance(data, list) else ""
        config = item.get("config")
        configurable = config.get("configurable") if isinstance(config, dict) else None
        for key, fields, strict in (("context", item.get("context"), True),
                                    ("config.configurable", configurable, False)):
            if fields is None:
                continue
            if not isinstance(fields, dict):
                return f"{where}{key}: must be an object of settings, got {type(fields).__name__}"
            try:
                check_fields(fields, rules, caps, strict=strict)
            except InvalidSettings as exc:
                return f"{where}{key}.{exc}"
    return None


def check_fields(fields: Mapping[str, Any], rules: Mapping[str, FieldRule], caps: Caps, *, strict: bool) -> None:
    """:class:`InvalidSettings` for the first unusable setting of ``fields``.

    ``strict``: unknown names too; else only names that look like a misspelt field (``configurable`` also carries
    LangGraph's own keys).
    """
    for name, value in fields.items():
        rule = rules.get(name)
        if rule is None:
            near = difflib.get_close_matches(name, list(rules), n=1, cutoff=0.8 if not strict else 0.6)
            if strict or near:
                hint = f" (did you mean {near[0]!r}?)" if near else f"; known settings: {', '.join(rules)}"
                raise InvalidSettings((name if name.isidentifier() else repr(name))[:80], f"unknown setting{hint}")
            continue
        checked = rule.check(value)
        if name in caps and checked is not None and checked > caps[name][0]:
            limit, env = caps[name]
            raise InvalidSettings(name, f"{checked:g} is over this server's limit of {limit} ({env})")


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
    return owned_fields(data)


def owned_fields(data: Any) -> set[str]:
    """:func:`server_owned_fields` of parsed JSON."""
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
    return run_input_problem(data)


def run_input_problem(data: Any) -> tuple[int, str] | None:
    """:func:`bad_run_input` of parsed JSON."""
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


async def respond(send: Send, status: int, error: str, message: str, *, retry_after: int | None = None) -> None:
    """Send a JSON error in Aegra's shape (``{"error", "message", "details"}``)."""
    payload = json.dumps({"error": error, "message": message, "details": None}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})

"""The start-up self-check: prove over HTTP that the running server really enforces authentication.

Aegra falls back to serving everyone as "anonymous" when its auth handler does not load (a wrong path, an
import error), and says so only in a log line. So ``scale serve`` asks its own server, through the start-up
gate, before anyone else may: a request without credentials and one with a wrong key must get 401, a
configured key must be accepted and see the project's graphs, and a body over the limit must get 413.
"""

from __future__ import annotations

import secrets

import httpx

from scale_graph.server.guard import GATE_HEADER

PROTECTED = "/assistants/search"
"""A protected endpoint that changes nothing."""
TIMEOUT = 30.0
"""Seconds for each probe (the first one also loads the graphs' assistants)."""


class SelfCheckError(RuntimeError):
    """The server failed a check; the message says which and what to fix."""


async def verify(base_url: str, *, gate_token: str, auth_path: str, max_body_bytes: int,
                 graphs: list[str], key: str | None) -> list[str]:
    """Run the checks against ``base_url``; the list of what passed, or :class:`SelfCheckError`.

    ``key`` is a configured API key for the positive check (None with a custom handler: then only the
    rejections and the body limit are checked).
    """
    passed: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, headers={GATE_HEADER: gate_token}) as client:
        await _expect(client, {}, 401, "a request without credentials", auth_path)
        passed.append("a request without credentials gets 401")
        wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
        await _expect(client, wrong, 401, "a request with a wrong key", auth_path)
        passed.append("a request with a wrong key gets 401")
        if key is not None:
            found = await _expect(client, {"X-API-Key": key}, 200, "a request with a configured key", auth_path)
            missing = set(graphs) - {a.get("graph_id") for a in found.json()}
            if missing:
                raise SelfCheckError(f"the server does not serve the graph(s) {', '.join(sorted(missing))}")
            passed.append(f"a configured key is accepted and sees the graphs {', '.join(graphs)}")
        response = await client.post(PROTECTED, content=b" " * (max_body_bytes + 1),
                                     headers={"Content-Type": "application/json"})
        if response.status_code != 413:
            raise SelfCheckError(f"a body of {max_body_bytes + 1} bytes got HTTP {response.status_code}, not 413")
        passed.append(f"a body over {max_body_bytes} bytes gets 413")
    return passed


async def _expect(client: httpx.AsyncClient, headers: dict[str, str], status: int, what: str,
                  auth_path: str) -> httpx.Response:
    response = await client.post(PROTECTED, json={}, headers=headers)
    if response.status_code == status:
        return response
    if status == 401 and response.status_code < 400:
        raise SelfCheckError(
            f"{what} got HTTP {response.status_code}, not 401: authentication is NOT active. Aegra serves "
            f"everyone when its auth handler does not load; check the auth path {auth_path!r} (it must name an "
            "Auth instance, as module:variable or ./file.py:variable) and the server log")
    raise SelfCheckError(f"{what} got HTTP {response.status_code}, expected {status}: {response.text[:300]}")

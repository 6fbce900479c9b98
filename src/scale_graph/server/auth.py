"""API-key authentication for the production server: the Aegra (LangGraph ``Auth``) handler module.

Keys come from ``$SCALE_SERVER_API_KEYS`` (comma-separated) or the file named by
``$SCALE_SERVER_API_KEYS_FILE`` (one per line; ``#`` starts a comment). Each entry is ``name:key`` or a bare
``key``; the name (else ``key-`` and the first 8 hex digits of the key's SHA-256) is the caller's identity, and
Aegra keeps each identity's threads apart. Keys are at least :data:`MIN_KEY_LENGTH` characters.

A request authenticates with ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (what langgraph-sdk's
``get_client(api_key=...)`` and ``RemoteGraph(api_key=...)`` send). Aegra hands the handler the request
headers as one dict with lowercase names; LangGraph's own server may use bytes, which work too.

Only SHA-256 digests of the keys are held, and a presented key is compared with every digest in constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from langgraph_sdk import Auth
from langgraph_sdk.auth.types import MinimalUserDict

KEYS_ENV = "SCALE_SERVER_API_KEYS"
KEYS_FILE_ENV = "SCALE_SERVER_API_KEYS_FILE"
MIN_KEY_LENGTH = 16
"""Shortest key accepted (``python -c "import secrets; print(secrets.token_urlsafe(24))"`` makes a good one)."""

REJECTED = "missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


class ApiKeyConfigError(ValueError):
    """The configured keys cannot be used; the message says why."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys(entries: list[str]) -> list[tuple[str, str]]:
    """(identity, key) for ``name:key`` or bare ``key`` entries; :class:`ApiKeyConfigError` if one is unusable."""
    keys: list[tuple[str, str]] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, key = entry.partition(":")
        name, key = (name.strip(), key.strip()) if sep else ("", entry)
        if len(key) < MIN_KEY_LENGTH:
            raise ApiKeyConfigError(f"an API key is shorter than {MIN_KEY_LENGTH} characters"
                                    + (f" (the one named {name!r})" if name else ""))
        if any(key == other for _, other in keys):
            raise ApiKeyConfigError("the same API key is configured twice")
        keys.append((name or f"key-{hashlib.sha256(key.encode()).hexdigest()[:8]}", key))
    return keys


def configured_entries(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(identity, key) of every configured key; :class:`ApiKeyConfigError` when there are none."""
    env = os.environ if environ is None else environ
    entries = [e for e in env.get(KEYS_ENV, "").split(",") if e.strip()]
    if path := env.get(KEYS_FILE_ENV):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ApiKeyConfigError(f"cannot read {KEYS_FILE_ENV}={path}: {exc.strerror}") from exc
        entries += [line.split("#", 1)[0] for line in lines]
    keys = parse_keys(entries)
    if not keys:
        raise ApiKeyConfigError(f"no API keys: set {KEYS_ENV}=name:key[,...] or {KEYS_FILE_ENV}=PATH "
                                f"(keys of at least {MIN_KEY_LENGTH} characters)")
    return keys


def load_keys(environ: Mapping[str, str] | None = None) -> dict[bytes, str]:
    """Key digest → identity, for :func:`identify` (only digests are kept)."""
    return {_digest(key): name for name, key in configured_entries(environ)}


def presented_key(headers: Mapping[str, str] | Mapping[bytes, bytes]) -> str | None:
    """The key a request carries (``Authorization: Bearer`` first, then ``X-API-Key``), else None."""
    lowered = {_text(k).lower(): _text(v) for k, v in headers.items()}
    scheme, _, token = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return lowered.get("x-api-key", "").strip() or None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def identify(headers: Mapping[str, str] | Mapping[bytes, bytes], keys: Mapping[bytes, str]) -> str | None:
    """The identity whose key the request carries, else None (every digest is compared, in constant time)."""
    key = presented_key(headers)
    if key is None:
        return None
    digest = _digest(key)
    found = None
    for known, name in keys.items():
        if hmac.compare_digest(known, digest):
            found = name
    return found


@functools.cache
def configured_keys() -> dict[bytes, str]:
    """The process's keys, read once."""
    return load_keys()


auth = Auth()
"""The handler Aegra loads (``scale_graph.server.auth:auth``)."""


@auth.authenticate
async def authenticate(headers: Mapping[str, str] | Mapping[bytes, bytes]) -> MinimalUserDict:
    """Accept a request carrying a configured key; reject every other with 401."""
    identity = identify(headers, configured_keys())
    if identity is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail=REJECTED)
    return {"identity": identity, "display_name": identity, "is_authenticated": True, "permissions": []}

"""What an OpenAI-compatible endpoint tells about itself: the model it serves, its context length, token counts.

One ``GET /models`` probe per endpoint (cached) gives the model id and, on vLLM, ``max_model_len``. Prompt tokens
are counted with the server's own tokenizer where it has one: vLLM's ``POST /tokenize`` applies the chat template
to the messages (exact); llama.cpp's ``POST /tokenize`` counts a text (the contents, plus a per-message allowance
for the template). With neither, the UTF-8 byte count is used: a byte-level tokenizer never makes more tokens than
bytes, so it is a safe upper bound. This module knows nothing of graphs, presets or the embedded model.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import httpx2
from langchain_core.messages import BaseMessage

from scale_graph.models.errors import EndpointError

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a TCP connection to the endpoint."""

TEMPLATE_TOKENS_PER_MESSAGE = 16
"""Allowance for the chat template around one message (role markers, separators, an empty think block) when the
server cannot apply the template itself."""

_NOT_HYBRID = re.compile(r"instruct|thinking|2507|coder|vl\b|-vl|embed|rerank|guard|omni|next", re.IGNORECASE)


@dataclass(frozen=True)
class EndpointInfo:
    """What one ``GET /models`` said."""

    model: str
    """The first model id listed."""
    max_model_len: int | None
    """The context length in tokens, where the server reports one (vLLM: ``max_model_len``)."""


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@functools.lru_cache(maxsize=16)
def endpoint_info(base_url: str, api_key: str | None = None) -> EndpointInfo:
    """The model id and context length ``base_url`` reports at ``/models`` (one request per endpoint)."""
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", headers=_headers(api_key),
                         timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))
        resp.raise_for_status()
        first = resp.json()["data"][0]
        model = str(first["id"])
    except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise EndpointError(base_url, f"cannot list models ({exc}); set the model name explicitly",
                            retryable=False) from exc
    length = first.get("max_model_len")
    return EndpointInfo(model=model, max_model_len=length if isinstance(length, int) and length > 0 else None)


def served_model_name(base_url: str, api_key: str | None = None) -> str:
    """The first model id the endpoint lists at ``/models`` (used when no model name is configured)."""
    return endpoint_info(base_url, api_key).model


def is_qwen3_hybrid(model: str) -> bool:
    """True for a Qwen3 model with a thinking switch (Qwen3-32B, Qwen3-30B-A3B, their quantisations).

    Not for the single-mode 2507 releases (``-Instruct-2507``, ``-Thinking-2507``), Qwen3-Coder, -VL, -Next,
    embedding or reranker models, which have no ``enable_thinking`` switch to turn.
    """
    name = model.rsplit("/", 1)[-1]
    return name.lower().startswith("qwen3-") and not _NOT_HYBRID.search(name)


def check_endpoint(base_url: str, api_key: str | None = None) -> None:
    """Fail fast, naming the URL, when nothing answers at ``base_url`` (a 404 on ``/models`` is fine)."""
    try:
        httpx.get(f"{base_url.rstrip('/')}/models", headers=_headers(api_key),
                  timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))
    except httpx.HTTPError as exc:
        raise EndpointError(base_url, f"cannot connect ({type(exc).__name__}: {exc}); is the server running?",
                            retryable=False) from exc


# --- counting prompt tokens ------------------------------------------------------------------------------------

TokenizerKind = Literal["vllm", "llama.cpp", "none"]
_tokenizers: dict[str, TokenizerKind] = {}
_tokenizers_lock = threading.Lock()
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else str(message.content)


def upper_bound_tokens(messages: Sequence[BaseMessage]) -> int:
    """A count no tokenizer exceeds: UTF-8 bytes of the contents plus the template allowance per message."""
    return sum(len(_text(m).encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages) + TEMPLATE_TOKENS_PER_MESSAGE


TOKENIZE_SECONDS = 30.0
"""How long a ``/tokenize`` count may take before the safe upper bound is used instead."""


def _reply(resp: httpx.Response | httpx2.Response) -> dict[str, Any] | None:
    """The JSON object a ``/tokenize`` request answered, or None (an error status, a body that is not one)."""
    if resp.status_code != 200:
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _post(url: str, payload: dict[str, Any], api_key: str | None) -> dict[str, Any] | None:
    try:
        return _reply(httpx.post(url, json=payload, headers=_headers(api_key),
                                 timeout=httpx.Timeout(TOKENIZE_SECONDS, connect=CONNECT_TIMEOUT)))
    except httpx.HTTPError:
        return None


async def _apost(client: httpx2.AsyncClient, url: str, payload: dict[str, Any],
                 api_key: str | None) -> dict[str, Any] | None:
    try:
        return _reply(await client.post(url, json=payload, headers=_headers(api_key), follow_redirects=False,
                                        timeout=httpx2.Timeout(TOKENIZE_SECONDS, connect=CONNECT_TIMEOUT)))
    except (httpx2.HTTPError, OSError):  # OSError: a TLS failure httpx2 does not map
        return None


@dataclass(frozen=True)
class _TokenCount:
    """One prompt to count: the ``/tokenize`` requests to try in turn, and how to read each one's answer."""

    root: str
    """The server's root URL (``/tokenize`` is served there, not under ``/v1``)."""
    model: str
    messages: Sequence[BaseMessage]
    chat_template_kwargs: dict[str, Any] | None

    @property
    def url(self) -> str:
        return f"{self.root}/tokenize"

    def forms(self) -> list[tuple[TokenizerKind, dict[str, Any]]]:
        """The request forms to try: the one this server is known to answer, else both (vLLM's first)."""
        with _tokenizers_lock:
            kind = _tokenizers.get(self.root)
        forms: list[tuple[TokenizerKind, dict[str, Any]]] = []
        if kind in (None, "vllm"):
            payload: dict[str, Any] = {"model": self.model, "add_generation_prompt": True,
                                       "messages": [{"role": _ROLES.get(m.type, m.type), "content": _text(m)}
                                                    for m in self.messages]}
            if self.chat_template_kwargs:
                payload["chat_template_kwargs"] = self.chat_template_kwargs
            forms.append(("vllm", payload))
        if kind in (None, "llama.cpp"):
            forms.append(("llama.cpp", {"content": "\n".join(_text(m) for m in self.messages)}))
        return forms

    def read(self, kind: TokenizerKind, data: dict[str, Any] | None) -> int | None:
        """The count in a ``kind`` answer (the server remembered as serving that form), or None."""
        if data is None:
            return None
        count: int | None = None
        if kind == "vllm" and isinstance(data.get("count"), int):
            count = int(data["count"])
        elif kind == "llama.cpp" and isinstance(data.get("tokens"), list) and "count" not in data:
            count = len(data["tokens"]) + TEMPLATE_TOKENS_PER_MESSAGE * (len(self.messages) + 1)
        if count is not None:
            with _tokenizers_lock:
                _tokenizers[self.root] = kind
        return count

    def none_served(self) -> int:
        """The safe upper bound, once no form answered (remembered when neither was known: not asked again)."""
        with _tokenizers_lock:
            _tokenizers.setdefault(self.root, "none")
        return upper_bound_tokens(self.messages)


def _token_count(base_url: str, model: str, messages: Sequence[BaseMessage],
                 chat_template_kwargs: dict[str, Any] | None) -> _TokenCount:
    return _TokenCount(base_url.rstrip("/").removesuffix("/v1"), model, messages, chat_template_kwargs)


def count_prompt_tokens(base_url: str, model: str, messages: Sequence[BaseMessage], *,
                        chat_template_kwargs: dict[str, Any] | None = None, api_key: str | None = None) -> int:
    """Prompt tokens of ``messages`` as the server will count them (see the module docstring for how).

    Blocking, for sync callers; on an event loop use :func:`acount_prompt_tokens`.
    """
    count = _token_count(base_url, model, messages, chat_template_kwargs)
    for kind, payload in count.forms():
        if (n := count.read(kind, _post(count.url, payload, api_key))) is not None:
            return n
    return count.none_served()


async def acount_prompt_tokens(client: httpx2.AsyncClient, base_url: str, model: str,
                               messages: Sequence[BaseMessage], *, chat_template_kwargs: dict[str, Any] | None = None,
                               api_key: str | None = None) -> int:
    """:func:`count_prompt_tokens` on the event loop, through ``client`` (a connection pool to the endpoint)."""
    count = _token_count(base_url, model, messages, chat_template_kwargs)
    for kind, payload in count.forms():
        if (n := count.read(kind, await _apost(client, count.url, payload, api_key))) is not None:
            return n
    return count.none_served()

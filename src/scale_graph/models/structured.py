"""Structured replies: ask for JSON matching a schema, parse it, retry a bounded number of times.

The control stages (decompose, select, assess) ask for JSON; ``response_format`` makes servers that support it
(vLLM, llama.cpp) constrain the output to the schema. A reply that still cannot be used is retried
``Context.content_retries`` times, then the stage takes its recorded fallback. Transport faults are not handled
here: they propagate as :class:`~scale_graph.models.errors.EndpointError` to the node's retry policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from scale_graph.models.client import ModelReply, acall_model
from scale_graph.models.profiles import ModeProfile
from scale_graph.state import Usage, add_usage, empty_usage

UNUSABLE_CONTENT = (ValueError, TypeError, KeyError, RecursionError)
"""What parsing a reply may raise for content that cannot be used (``RecursionError``: JSON nested deeper than
Python's recursion limit); the stage retries, then takes its fallback."""


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` that asks the server to constrain output to ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@dataclass
class JsonResult[T]:
    """The outcome of :func:`acall_json`: the parsed value (or None), every reply's cost, the last error."""

    value: T | None
    replies: list[ModelReply] = field(default_factory=list)
    error: str | None = None

    def usage(self) -> Usage:
        """All attempts' usage summed."""
        total: dict[str, Usage] = {"all": empty_usage()}
        for reply in self.replies:
            total = add_usage(total, {"all": reply.usage()})
        return total["all"]


async def acall_json[T](
    profile: ModeProfile,
    messages: Sequence[BaseMessage],
    *,
    schema_name: str,
    schema: dict[str, Any],
    parse: Callable[[Any], T],
    retries: int,
    **call_kwargs: Any,
) -> JsonResult[T]:
    """Ask for JSON matching ``schema`` and ``parse`` it, trying at most ``1 + retries`` times.

    ``parse`` gets the decoded JSON and raises ``ValueError`` when the content is unusable; then the call is
    repeated (bounded). Returns with ``value=None`` and the last error when every attempt failed, or at once when
    the prompt leaves no room in the context (a retry would not either): the caller takes its stage's fallback.
    """
    result: JsonResult[T] = JsonResult(value=None)
    for _attempt in range(1 + max(0, retries)):
        reply = await acall_model(profile, messages, response_format=json_schema_format(schema_name, schema),
                                  **call_kwargs)
        result.replies.append(reply)
        if not reply.sent:
            result.error = reply.fit_note()
            return result
        try:
            result.value = parse(json.loads(extract_json(reply.content)))
            result.error = None
            return result
        except UNUSABLE_CONTENT as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:300]
    return result


def extract_json(text: str) -> str:
    """The JSON object in ``text``: the whole text, or the span from the first '{' to the last '}'."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text.removeprefix("json").strip()
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end < start:
        raise ValueError("no JSON object in the reply")
    return text[start : end + 1]

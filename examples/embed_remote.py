"""Use the deployed SCALE graph (``scale serve``) from another app: langgraph-sdk, and RemoteGraph as a node.

    export SCALE_SERVER_URL=http://127.0.0.1:2026 SCALE_SERVER_API_KEY=...   # one of the server's keys
    python examples/embed_remote.py "What is 17 * 23?"

On Aegra, address the graph by its **assistant id** (:func:`assistant_id`): runs accept the graph id
``scale`` too, but ``RemoteGraph.get_graph()`` and the other ``/assistants/{id}`` endpoints do not.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, NotRequired, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient


def server() -> tuple[str, str]:
    """The server URL and API key from the environment."""
    return os.environ.get("SCALE_SERVER_URL", "http://127.0.0.1:2026"), os.environ["SCALE_SERVER_API_KEY"]


def assistant_id(client: SyncLangGraphClient, graph_id: str = "scale") -> str:
    """The id of the assistant the server created for ``graph_id`` (Aegra derives it from the graph id)."""
    found = client.assistants.search(graph_id=graph_id, limit=1)
    if not found:
        raise LookupError(f"the server serves no graph {graph_id!r}")
    return str(found[0]["assistant_id"])


async def solve_with_sdk(problem: str, url: str, api_key: str, **context: Any) -> dict[str, Any]:
    """Solve on a new server thread with langgraph-sdk, printing SCALE's progress events as they stream."""
    final: dict[str, Any] = {}
    async with get_client(url=url, api_key=api_key) as client:
        thread = await client.threads.create()
        async for part in client.runs.stream(thread["thread_id"], "scale", input={"problem": problem},
                                             context=context, stream_mode=["custom", "values"]):
            if part.event == "custom":
                print("  progress:", part.data.get("event"), file=sys.stderr)
            elif part.event == "values":
                final = part.data
    return {"thread_id": thread["thread_id"], **final}


class AppState(TypedDict):
    """The calling app's state: SCALE's input and output keys."""

    problem: str
    answer: NotRequired[str | None]
    steps: NotRequired[list[dict[str, Any]]]


def build_remote_app(client: SyncLangGraphClient, *, context: dict[str, Any] | None = None,
                     **compile_kwargs: Any) -> CompiledStateGraph:
    """An app whose ``scale`` node is the deployed graph: START → scale (RemoteGraph) → END.

    ``client`` is a langgraph-sdk sync client for the server (the caller closes it). A RemoteGraph node does not
    pass the app's run context on, so SCALE's settings (``context``, e.g. ``{"candidates": 2}``) go in its
    ``config["configurable"]``, which Aegra uses as the run context when no context is given. With a
    checkpointer, RemoteGraph runs on the server thread named like the app's thread, so give each problem its
    own app thread (a thread holds one problem; a second one on it is refused).
    """
    remote = RemoteGraph(assistant_id(client), sync_client=client, name="scale",
                         config={"configurable": dict(context or {})})
    builder = StateGraph(AppState)
    builder.add_node("scale", remote)
    builder.add_edge(START, "scale")
    builder.add_edge("scale", END)
    return builder.compile(**compile_kwargs)


if __name__ == "__main__":
    problem = " ".join(sys.argv[1:]) or "What is 17 * 23?"
    url, key = server()
    print("langgraph-sdk:", asyncio.run(solve_with_sdk(problem, url, key, candidates=2))["answer"])
    with get_sync_client(url=url, api_key=key) as client:
        app = build_remote_app(client, context={"candidates": 2})
        print("RemoteGraph node:", app.invoke({"problem": problem})["answer"])

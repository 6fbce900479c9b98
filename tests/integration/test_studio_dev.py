"""LangGraph Studio's local server, offline: ``langgraph dev`` as docs/serving.md starts it, on a free port,
serving langgraph.json's graphs with their context descriptions, and running SCALE on the fake model; and Studio's
everyday gestures on a thread (a second problem, an edit with no ``as_node``, a fork with the shorthand payload, a
replay, a malformed edit) through langgraph-sdk, against ``langgraph dev`` and against ``scale serve``."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client

from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of, user_text
from tests.integration.conftest import (
    STARTUP_TIMEOUT,
    answers_200,
    delete_redis_keys,
    free_port,
    postgres_database,
    ready,
    redis_client,
    server_env,
    start_server,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}


def echo_script(body: dict[str, Any]) -> Reply:
    """The stock fake's replies, except that a solution boxes the number a "What is N?" problem asks for, so an
    answer shows which problem it belongs to."""
    reply = scale_script(body)
    asked = re.findall(r"What is (\d+)\?", user_text(body))
    if stage_of(body) in {"system1", "system2"} and asked:
        reply.content = f"So \\boxed{{{asked[-1]}}}"
    return reply


@contextmanager
def langgraph_dev(tmp_path: Path, fake: FakeOpenAIServer) -> Iterator[tuple[str, Path]]:
    """``langgraph dev`` on a free port, from the project directory as documented (graph paths are relative to
    it; its scratch state goes to the git-ignored .langgraph_api/)."""
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    assert langgraph, "langgraph-cli is not installed: pip install 'scale-graph[studio]'"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_")}
    env.update(OFFLINE, SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model")
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen([langgraph, "dev", "--config", str(ROOT / "langgraph.json"), "--host",
                                 "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    try:
        wait_for(lambda: answers_200(f"{url}/ok", proc, log), 90, "langgraph dev to answer /ok", 0.5)
        yield url, log
    finally:
        stop_process(proc)


@pytest.fixture
def studio(tmp_path):
    with FakeOpenAIServer() as fake, langgraph_dev(tmp_path, fake) as served:
        yield served


def test_langgraph_dev_serves_the_graphs_offline(studio) -> None:
    url, log = studio
    with get_sync_client(url=url, api_key=None) as client:
        assistants = {a["graph_id"]: a["assistant_id"] for a in client.assistants.search()}
        assert "scale" in assistants
        schemas = client.assistants.get_schemas(assistants["scale"])
        threshold = schemas["context_schema"]["properties"]["threshold"]
        assert "τ of Eq. 4" in threshold["description"]
        drawn = client.assistants.get_graph(assistants["scale"], xray=True)
        assert {n["id"] for n in drawn["nodes"]} >= {"decompose", "select", "assess", "route", "solve_fast",
                                                      "solve_deep", "finalize"}
        thread = client.threads.create()
        result = client.runs.wait(thread["thread_id"], "scale", input={"problem": "What is 2 + 2?"},
                                  context={"candidates": 2})
        assert result["answer"] == "20"
    text = log.read_text()
    assert "skipping metadata loop" in text  # no license key: nothing is reported anywhere


# --- Studio's everyday gestures on one thread, on both servers ------------------------------------------------


@contextmanager
def scale_serve(tmp_path: Path, fake: FakeOpenAIServer) -> Iterator[tuple[str, str]]:
    """``scale serve`` (Aegra, a PostgreSQL database of its own, Redis) on the fake model: (url, api key)."""
    redis_client().close()
    with postgres_database() as database_url:
        key = secrets.token_urlsafe(24)
        port = free_port()
        env = server_env(SCALE_SERVER_API_KEYS=f"tester:{key}", SCALE_DATABASE_URL=database_url,
                         SCALE_BASE_URL=fake.base_url, SCALE_MODEL="fake-model")
        log = tmp_path / "serve.log"
        proc = start_server(port, env, log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: ready(url, proc, log), STARTUP_TIMEOUT, "scale serve to pass its self-check", 0.5)
            yield url, key
        finally:
            stop_process(proc)
            delete_redis_keys(f"scale:{database_url.rsplit('/', 1)[1]}:")


@pytest.fixture(params=["langgraph dev", "scale serve"])
def served(request, tmp_path):
    """(url, api key or None, the fake model) for each server Studio can drive."""
    with FakeOpenAIServer(echo_script) as fake:
        if request.param == "langgraph dev":
            with langgraph_dev(tmp_path, fake) as (url, _log):
                yield url, None, fake
        else:
            with scale_serve(tmp_path, fake) as (url, key):
                yield url, key, fake


CONTEXT = {"candidates": 2}


def where_next(history: list[dict], node: str, steps_done: int) -> dict:
    """The newest checkpoint whose next node is ``node`` with ``steps_done`` sub-problems solved."""
    return next(h for h in history if h["next"] == [node] and len(h["values"].get("steps") or []) == steps_done)


def test_studio_gestures_on_one_thread(served) -> None:
    url, key, fake = served
    with get_sync_client(url=url, api_key=key) as client:
        thread_id = client.threads.create()["thread_id"]

        # 1. two problems typed into one thread: both answered, both runs in the history
        first = client.runs.wait(thread_id, "scale", input={"problem": "What is 7?"}, context=CONTEXT)
        second = client.runs.wait(thread_id, "scale", input={"problem": "What is 12?"}, context=CONTEXT)
        assert (first["answer"], second["answer"]) == ("7", "12")
        assert len(second["steps"]) == 2  # the second problem's steps only
        state = client.threads.get_state(thread_id)
        assert state["values"]["problem"] == "What is 12?" and state["next"] == []
        history = client.threads.get_history(thread_id, limit=200)
        assert sum(h["metadata"]["source"] == "input" for h in history) == 2

        # 2. Studio's default edit (no as_node) at a checkpoint written by route: Eq. 4 re-routes the step
        at_route = where_next(history, "solve_fast", 0)
        edited = client.threads.update_state(thread_id, {"assessments": {"0": 0.95}},
                                             checkpoint_id=at_route["checkpoint"]["checkpoint_id"])
        edited_state = client.threads.get_state(thread_id, checkpoint_id=edited["checkpoint"]["checkpoint_id"])
        assert edited_state["next"] == ["solve_deep"]
        asked = len(fake.requests)
        rerun = client.runs.wait(thread_id, "scale", input=None, checkpoint=edited["checkpoint"], context=CONTEXT)
        assert [s["mode"] for s in rerun["steps"]] == ["system2", "system2"] and rerun["answer"] == "12"
        assert [stage_of(b) for b in fake.requests[asked:]] == ["system2", "system2"]

        # 3. a fork with the shorthand payload, written as the assessment stage (docs/serving.md)
        after_assess = where_next(history, "route", 0)
        forked = client.threads.update_state(thread_id, {"assessments": {"0": 0.95}}, as_node="assess",
                                             checkpoint_id=after_assess["checkpoint"]["checkpoint_id"])
        fork_run = client.runs.wait(thread_id, "scale", input=None, checkpoint=forked["checkpoint"],
                                    context=CONTEXT)
        assert fork_run["steps"][0]["mode"] == "system2" and fork_run["steps"][0]["forced"] == "edit→d=0.95"

        # 4. a replay from before the last step redoes only that step
        before_last = where_next(history, "solve_deep", 1)
        asked = len(fake.requests)
        replayed = client.runs.wait(thread_id, "scale", input=None,
                                    checkpoint_id=before_last["checkpoint"]["checkpoint_id"], context=CONTEXT)
        assert replayed["answer"] == "12" and [stage_of(b) for b in fake.requests[asked:]] == ["system2"]

        # 5. a malformed edit is refused with a 4xx naming the problem, and nothing is written
        written = len(client.threads.get_history(thread_id, limit=200))
        headers = {"x-api-key": key} if key else {}
        refused = httpx.post(f"{url}/threads/{thread_id}/state", headers=headers, timeout=30,
                             json={"values": {"assessments": {"0": "high"}},
                                   "checkpoint_id": at_route["checkpoint"]["checkpoint_id"]})
        assert refused.status_code in {400, 422}, refused.text
        assert "difficulty must be a number in [0, 1]" in refused.text
        assert len(client.threads.get_history(thread_id, limit=200)) == written

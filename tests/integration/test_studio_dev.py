"""LangGraph Studio's local server, offline: ``langgraph dev`` as docs/serving.md starts it, on a free port,
serving langgraph.json's graphs with their context descriptions, and running SCALE on the fake model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from scale_graph.testing import FakeOpenAIServer
from tests.integration.conftest import answers_200, free_port, stop_process, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false"}


@pytest.fixture
def studio(tmp_path):
    """``langgraph dev`` on a free port, from the project directory as documented (graph paths are relative to
    it; its scratch state goes to the git-ignored .langgraph_api/)."""
    langgraph = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    assert langgraph, "langgraph-cli is not installed: pip install 'scale-graph[studio]'"
    with FakeOpenAIServer() as fake:
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

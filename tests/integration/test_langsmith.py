"""LangSmith tracing is off unless the standard env vars turn it on; on, runs go to the configured endpoint."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from scale_graph.testing import FakeOpenAIServer

pytestmark = pytest.mark.integration

SCRIPT = """
from langchain_core.tracers.langchain import wait_for_all_tracers
from scale_graph import Context, solve
r = solve("What is 10 + 20?", context=Context(candidates=1), problem_id="p-1")
wait_for_all_tracers()
print(r.answer)
"""


class Capture(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, bytes]]] = []

    def log_message(self, *args) -> None:
        pass

    def _ok(self) -> None:
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._ok()

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        Capture.posts.append((self.path, data))
        self._ok()

    do_PATCH = do_POST


@pytest.fixture
def langsmith_endpoint():
    Capture.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)


def test_nothing_is_sent_without_the_env_vars(cli_env, langsmith_endpoint) -> None:
    env = {k: v for k, v in cli_env.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env["LANGSMITH_ENDPOINT"] = langsmith_endpoint  # where it would go, if anything went
    with FakeOpenAIServer() as model:
        env["SCALE_BASE_URL"] = model.base_url
        proc = run(env)
    assert proc.returncode == 0, proc.stderr
    assert Capture.posts == []


def test_tracing_env_vars_send_named_runs(cli_env, langsmith_endpoint) -> None:
    env = {**cli_env, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "test-key",
           "LANGSMITH_ENDPOINT": langsmith_endpoint, "LANGSMITH_PROJECT": "scale-test"}
    with FakeOpenAIServer() as model:
        env["SCALE_BASE_URL"] = model.base_url
        proc = run(env)
    assert proc.returncode == 0, proc.stderr
    sent = b"".join(body for _, body in Capture.posts)
    assert Capture.posts, "no trace was sent"
    for name in (b'"scale"', b'"decompose"', b'"assess"', b'"solve_system1"', b'"solve_system2"'):
        assert name in sent
    assert b'"p-1"' in sent and b'"system2"' in sent  # metadata and mode tags travel with the runs


def test_eval_experiment_traces_every_attempt(cli_env, langsmith_endpoint, tmp_path) -> None:
    data = tmp_path / "tiny.jsonl"
    data.write_text('{"id": "t-1", "problem": "What is 10 + 20?", "answer": "30"}\n'
                    '{"id": "t-2", "problem": "What is 5 + 15?", "answer": "20"}\n')
    env = {**cli_env, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "test-key",
           "LANGSMITH_ENDPOINT": langsmith_endpoint}
    with FakeOpenAIServer() as model:
        proc = subprocess.run([sys.executable, "-m", "scale_graph.cli", "eval", "--dataset", str(data), "--method",
                               "cot", "--out", str(tmp_path / "out"), "--quiet", "--base-url", model.base_url,
                               "--experiment", "exp-42"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LangSmith project 'exp-42'" in proc.stderr
    sent = b"".join(body for _, body in Capture.posts)
    for needle in (b'"cot:t-1#0"', b'"cot:t-2#0"', b'"exp-42"', b'"eval_run"'):
        assert needle in sent, needle


def test_eval_experiment_without_tracing_sends_nothing(cli_env, langsmith_endpoint, tmp_path) -> None:
    data = tmp_path / "tiny.jsonl"
    data.write_text('{"id": "t-1", "problem": "What is 10 + 20?", "answer": "30"}\n')
    env = {k: v for k, v in cli_env.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env["LANGSMITH_ENDPOINT"] = langsmith_endpoint
    with FakeOpenAIServer() as model:
        proc = subprocess.run([sys.executable, "-m", "scale_graph.cli", "eval", "--dataset", str(data), "--method",
                               "cot", "--out", str(tmp_path / "out"), "--quiet", "--base-url", model.base_url,
                               "--experiment", "exp-42"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tracing is off" in proc.stderr and Capture.posts == []

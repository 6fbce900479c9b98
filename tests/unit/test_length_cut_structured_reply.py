"""A JSON reply cut off by its budget is a content fault (retried, then the stage's fallback), not a crash.

A structured request is a plain chat completion with ``response_format`` in the body (``models/client.py``), so
a reply cut by ``length`` comes back like any other, with finish reason ``length`` and unparsable JSON; ``acall_json``
(``models/structured.py``) retries it (``content_retries``) and the stage then falls back. Through the real HTTP
client against the fake server, as with the embedded model.
"""

from __future__ import annotations

from scale_graph.api import solve
from scale_graph.context import Context
from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of


def test_a_cut_off_decomposition_falls_back_instead_of_failing():
    def script(body):
        if stage_of(body) == "decompose":
            return Reply(content='{"subproblems": ["Find the', finish_reason="length", completion_tokens=9)
        return scale_script(body)

    with FakeOpenAIServer(script) as server:
        ctx = Context(base_url=server.base_url, model="fake-model", candidates=2, content_retries=1)
        result = solve("What is 2 + 3?", context=ctx)
        assert server.stages().count("decompose") == 4  # 2 candidates x (1 + 1 retry)
    assert result.decomposition_fallback is not None
    assert result.subproblems == ["What is 2 + 3?"]
    assert result.usage["decompose"]["calls"] == 4
    assert result.usage["decompose"]["completion_tokens"] == 36
    assert result.answer is not None

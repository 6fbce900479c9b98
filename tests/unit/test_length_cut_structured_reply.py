"""A JSON reply cut off by its budget is a content fault (retried, then the stage's fallback), not a crash.

The OpenAI client raises ``LengthFinishReasonError`` for a structured-output reply cut by ``length``; this
test goes through the real HTTP client against the fake server, as the embedded model does.
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

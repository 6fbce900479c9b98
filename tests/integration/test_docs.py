"""The documentation's Python examples run as written (against the scripted fake server, via SCALE_BASE_URL)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scale_graph.testing import FakeOpenAIServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)


EXAMPLES = [(path.name, i, code) for path in DOCS for i, code in enumerate(python_blocks(path))]


@pytest.mark.parametrize(("doc", "index", "code"), EXAMPLES, ids=[f"{d}#{i}" for d, i, _ in EXAMPLES])
def test_python_example_runs(doc, index, code, cli_env, tmp_path) -> None:
    if "# docs-test: skip" in code:
        pytest.skip("example needs a running server or GPU")
    with FakeOpenAIServer() as server:
        cli_env["SCALE_BASE_URL"] = server.base_url
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env,
                              cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, f"{doc} example {index} failed:\n{proc.stderr[-3000:]}"


def test_readme_has_a_python_example() -> None:
    assert python_blocks(ROOT / "README.md")

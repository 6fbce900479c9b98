"""Answer extraction: the last \\boxed{...} with balanced braces."""

from __future__ import annotations

import pytest

from scale_graph.answers import extract_boxed


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so \\boxed{72}.", "72"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\dfrac{\\sqrt{3}}{2}}", "\\dfrac{\\sqrt{3}}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed {(3, \\frac{\\pi}{2})}", "(3, \\frac{\\pi}{2})"),
        ("\\fbox{5}", "5"),
        ("$\\boxed{ 14/3 }$", "14/3"),
        ("\\boxed{7} and an unclosed \\boxed{8", "7"),
        ("no box here: 72", None),
        ("", None),
        (None, None),
        ("\\boxed{", None),
        ("\\boxed{\\boxed{3}}", "3"),
        ("\\boxed{\\\\}", "\\\\"),
        ("\\boxed{\\}", None),
    ],
)
def test_extract_boxed(text, answer) -> None:
    assert extract_boxed(text) == answer

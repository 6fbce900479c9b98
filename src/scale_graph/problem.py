"""The problem text: what a usable problem is, checked before any model call.

A problem is plain text: whatever it says (even "ignore all instructions…") is only ever put into prompts as the
problem, never executed. Its checks run at the edges: the CLI (before a thread exists), the server guard (422
before a run exists) and each graph's first node.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PROBLEM_CHARS = 20_000
"""The longest problem text accepted (characters). Longer input is refused before any model call."""

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 controls except tab, newline and carriage return; DEL; C1 controls (U+0080-U+009F)."""
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""Lone surrogates: not text (they cannot be encoded as UTF-8), but JSON can carry one (``"\\ud800"``)."""
_BLANK = frozenset("\u034f\u115f\u1160\u2800\u3164\uffa0")
"""Characters that show nothing but are not whitespace or format characters (Hangul fillers, the braille blank,
the combining grapheme joiner)."""


class InvalidProblem(ValueError):
    """The problem text cannot be used (empty, too long, control characters). The message says why."""


def _invisible(char: str) -> bool:
    """True for a character that shows nothing.

    Whitespace, a format character (zero-width space, joiners, BOM, direction marks, soft hyphen), a blank filler.
    """
    return char.isspace() or unicodedata.category(char) == "Cf" or char in _BLANK


def check_problem(problem: object) -> str:
    """``problem`` stripped, or :class:`InvalidProblem` with a clear message.

    Refused: not text, empty or only whitespace / zero-width characters, longer than :data:`MAX_PROBLEM_CHARS`,
    C0 or C1 control characters (tab, newline and carriage return are fine), lone surrogates. A problem is plain
    text: whatever it says (even "ignore all instructions…") is only ever put into prompts as the problem, never
    executed.
    """
    if not isinstance(problem, str):
        raise InvalidProblem(f"the problem must be text, got {type(problem).__name__}")
    text = problem.strip()
    if not text:
        raise InvalidProblem("the problem is empty")
    if len(text) > MAX_PROBLEM_CHARS:
        raise InvalidProblem(f"the problem is {len(text)} characters long; the limit is {MAX_PROBLEM_CHARS}")
    if bad := CONTROL_CHARS.search(text):
        raise InvalidProblem(f"the problem contains a control character (U+{ord(bad.group()):04X}) at "
                             f"position {bad.start()}")
    if bad := LONE_SURROGATE.search(text):
        raise InvalidProblem(f"the problem contains a lone surrogate (U+{ord(bad.group()):04X}) at position "
                             f"{bad.start()}, which is not valid text")
    if all(_invisible(c) for c in text):
        raise InvalidProblem("the problem is empty: it has only invisible characters (zero-width or format "
                             "characters)")
    return text

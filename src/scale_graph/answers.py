r"""Reading a model's answer: the last ``\boxed{}`` of a text, and the rewrite an integer answer needs first.

Plain text functions (no model, no math-verify): the nodes take a run's answer with :func:`extract_boxed`, and the
grader (:mod:`scale_graph.grading`) hands :func:`integer_box`'s output to math-verify in its workers.
"""

from __future__ import annotations

import re

_BOX_TOKENS = re.compile(r"(?P<box>\\(?:boxed|fbox)\s*\{)|(?P<escape>\\.)|(?P<open>\{)|(?P<close>\})", re.DOTALL)
r"""What :func:`extract_boxed` reads: a box opening, an escaped character (``\{``, ``\}``, ``\\``), a brace."""

# What math-verify (0.9) reads wrongly in a boxed integer answer, rewritten before it parses the box. All three
# come up in model output and a fair grader must accept them; everything else is left to math-verify.
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\s|\\[,;: ]|~)+\d{3})+(?!\d)")
r"""Digits in groups of three split by spacing: ``1\,000`` is LaTeX's thousands separator and ``1 000`` prints as
1000 in math mode, but math-verify reads both as the product 1·000 = 0 (so 1000 would be wrong and 0 right)."""
_GROUP_SPACE = re.compile(r"\s|\\[,;: ]|~")
_DEGREES = re.compile(r"\^\s*\{\s*(?:°|\\degree(?![A-Za-z]))\s*\}|\^?\s*(?:°|\\degree(?![A-Za-z]))")
r"""``90°`` and ``90\degree``: math-verify reads ``90^\circ`` as 90 but cannot parse these; the sign is dropped,
as math-verify drops ``^\circ``."""
_FINAL_PERIOD = re.compile(r"(?<![.\\])\.\s*$")
r"""A sentence's full stop that ended up inside the box (``\boxed{12.}``): math-verify cannot parse it."""


def extract_boxed(text: str | None) -> str | None:
    r"""The contents of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced; else None.

    "Last" is by where the box opens, so in a nested box the inner one counts: ``\boxed{\boxed{3}}`` gives
    ``3``. A box that is never closed is skipped. ``\{`` and ``\}`` are literal braces and ``\\`` is an escaped
    backslash (so ``\boxed{\\}`` gives ``\\``). One pass over the text, whatever the number of boxes.
    """
    if not text:
        return None
    opened: list[int | None] = []  # per unclosed brace: where its box's contents start, or None if no box
    last: tuple[int, int] | None = None  # (start, end) of the latest-opening closed box
    for token in _BOX_TOKENS.finditer(text):
        kind = token.lastgroup
        if kind == "box":
            opened.append(token.end())
        elif kind == "open":
            opened.append(None)
        elif kind == "close" and opened:
            start = opened.pop()
            if start is not None and (last is None or start > last[0]):
                last = (start, token.start())
    return text[last[0] : last[1]].strip() if last is not None else None


def integer_box(boxed: str) -> str:
    r"""The boxed answer with what math-verify misreads rewritten (for integer answers; see the patterns).

    Only these: everything else (units, ``^\circ``, ``1{,}000``, ``033``, ``x = 3``) math-verify reads right.
    """
    boxed = _GROUPED.sub(lambda m: _GROUP_SPACE.sub("", m.group()), boxed)
    boxed = _DEGREES.sub("", boxed)
    return _FINAL_PERIOD.sub("", boxed)

"""Evaluation data sets: the five shipped with the package, or any JSONL file.

The shipped ones have their provenance in ``scale_graph/data/README.md``; a file of your own needs rows with
``id``, ``problem`` and ``answer``.

Each set has an *answer kind* that tells the grader how to extract answers: ``integer`` for AIME, AMC and
GSM8K, ``latex`` for MATH500. For a file of your own it is ``integer`` when every gold answer is an integer,
else ``latex``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scale_graph.grading import AnswerKind

BUILTIN: dict[str, AnswerKind] = {
    "aime24": "integer",
    "aime25": "integer",
    "amc23": "integer",
    "gsm8k_dev": "integer",
    "math500": "latex",
}
"""The shipped data sets and their answer kinds."""

_INTEGER = re.compile(r"-?\d+")


class DatasetError(ValueError):
    """A data set that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Problem:
    """One evaluation item."""

    id: str
    problem: str
    answer: str
    """The gold final answer."""


@dataclass(frozen=True)
class Dataset:
    """A named list of problems and how their answers are graded."""

    name: str
    kind: AnswerKind
    problems: tuple[Problem, ...]
    source: str
    """Where it was read from."""


def load_dataset(spec: str) -> Dataset:
    """The data set ``spec`` names: a shipped name (``gsm8k_dev``) or a path to a JSONL file."""
    if spec in BUILTIN:
        resource = resources.files("scale_graph") / "data" / f"{spec}.jsonl"
        return Dataset(spec, BUILTIN[spec], parse_rows(resource.read_text("utf-8"), spec), f"package:{spec}")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DatasetError(f"unknown data set {spec!r}: not one of {', '.join(BUILTIN)} and not a file")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    problems = parse_rows(text, str(path))
    kind: AnswerKind = BUILTIN.get(path.stem) or (
        "integer" if all(_INTEGER.fullmatch(p.answer) for p in problems) else "latex"
    )
    return Dataset(path.stem, kind, problems, str(path))


def parse_rows(text: str, where: str) -> tuple[Problem, ...]:
    """The problems of a JSONL text; a malformed row raises :class:`DatasetError` naming ``where:line``."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problem = _parse_row(line, f"{where}:{lineno}")
        if problem.id in seen:
            raise DatasetError(f"{where}:{lineno}: id {problem.id!r} already used on line {seen[problem.id]}")
        seen[problem.id] = lineno
        problems.append(problem)
    if not problems:
        raise DatasetError(f"{where}: no problems in the file")
    return tuple(problems)


def _parse_row(line: str, where: str) -> Problem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object with id, problem and answer")
    values = {}
    for key in ("id", "problem", "answer"):
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "problem":
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise DatasetError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
        values[key] = value.strip()
    return Problem(**values)

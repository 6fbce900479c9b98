"""The results file of a run: JSONL, one row per finished attempt, appended as attempts finish.

A row is written with one ``write`` of a whole line, then flushed and synced, so a crash loses at most the
attempts in flight. A line cut short by a crash is dropped when the file is opened again (that attempt simply
runs again).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def read_rows(path: Path) -> list[Row]:
    """Every complete row of ``path`` (none when it does not exist); a cut-off last line is skipped."""
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.endswith("\n"):
                break  # the partial last line of an interrupted write
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not a results row ({exc.msg})") from None
    return rows


def read_dirs(paths: Iterable[Path]) -> Iterator[Row]:
    """The rows of every ``*.jsonl`` results file in the given directories (or files), in name order."""
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            yield from read_rows(file)


def attempt_key(row: Row) -> tuple[str, int]:
    """What identifies an attempt within a run: problem id and sample index."""
    return str(row["problem_id"]), int(row["sample"])


class ResultsWriter:
    """Appends rows to a results file, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(path)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, row: Row) -> None:
        """Write ``row`` as one line and make it durable."""
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_partial_line(path: Path) -> None:
    """Cut the file back to its last newline, so the next row does not continue a half-written one."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)

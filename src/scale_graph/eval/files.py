"""Writing output files whole or not at all: into a temporary file beside the target, then renamed over it.

A crash or Ctrl-C while a report, plot or traces file is being written leaves the previous version (or nothing)
in place, never half a file. The temporary file is hidden (its name starts with a dot), keeps the target's
suffix (matplotlib picks the image format from it) and is removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)
"""The process's umask: the renamed file gets the permissions a plain ``open`` would have given it."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write instead of ``path``; renamed to ``path`` when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes it private (0600)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

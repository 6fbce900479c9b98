"""Where threads are kept: the one checkpointer factory, used by the CLI and the server.

A *target* is either a SQLite file path or a ``postgresql://`` URL:

- default: ``$SCALE_CHECKPOINTER`` if set, else the SQLite file ``$SCALE_HOME/threads.sqlite``, where
  ``$SCALE_HOME`` defaults to ``$XDG_DATA_HOME/scale-graph`` (``~/.local/share/scale-graph``);
- ``postgresql://user@host:5432/db``: PostgreSQL (``pip install 'scale-graph[postgres]'``); the database is
  created when it does not exist yet, and the checkpoint tables on first use.

Runs on these checkpointers use durability :data:`DURABILITY` (``"sync"``): each superstep's checkpoint is
written before the next step starts, so a process killed mid-run keeps every finished step.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

if TYPE_CHECKING:  # the postgres extra is optional: imported where it is used
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg import Connection
    from psycopg.rows import DictRow

DURABILITY: Literal["sync"] = "sync"
"""Checkpoint durability of every run on a thread: the checkpoint is saved before the next step starts."""

CONNECT_TIMEOUT = 5
"""Seconds to wait for PostgreSQL to accept a connection."""


class CheckpointerError(RuntimeError):
    """The checkpointer cannot be opened; the message says where and why."""


def scale_home() -> Path:
    """The directory for the user's threads: ``$SCALE_HOME``, else ``$XDG_DATA_HOME/scale-graph``."""
    explicit = os.environ.get("SCALE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "scale-graph"


def default_target() -> str:
    """``$SCALE_CHECKPOINTER``, else the SQLite file ``$SCALE_HOME/threads.sqlite``."""
    return os.environ.get("SCALE_CHECKPOINTER") or str(scale_home() / "threads.sqlite")


def is_postgres(target: str) -> bool:
    """True for a ``postgres://`` / ``postgresql://`` URL."""
    return target.startswith(("postgres://", "postgresql://"))


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def open_checkpointer(target: str | None = None) -> Iterator[BaseCheckpointSaver[str]]:
    """The checkpointer for ``target`` (default :func:`default_target`), set up and ready; closed on exit."""
    target = target or default_target()
    if is_postgres(target):
        with _postgres_saver(target) as saver:
            yield saver
        return
    path = Path(target).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointerError(f"cannot open the thread store {path}: {exc}") from exc
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield saver
    finally:
        conn.close()


@contextmanager
def _postgres_saver(url: str) -> Iterator[BaseCheckpointSaver[str]]:
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError as exc:
        raise CheckpointerError("PostgreSQL threads need the postgres extra: "
                                "pip install 'scale-graph[postgres]'") from exc
    ensure_postgres_database(url)
    try:
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row,
                               connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise CheckpointerError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
    with conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


def ensure_postgres_database(url: str) -> None:
    """Create the database ``url`` names if it does not exist.

    Raises :class:`CheckpointerError`, naming the server, when it cannot be reached.
    """
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        pass  # created concurrently by another process
    except psycopg.Error as exc:
        raise CheckpointerError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}".strip()) from exc


def latest_thread_ids(saver: BaseCheckpointSaver[str], limit: int = 50) -> list[str]:
    """Thread ids, most recently written first.

    One query on the saver's own connection, no checkpoint loaded; for the SQLite and PostgreSQL savers this
    module opens.
    """
    query = ("SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id "
             "ORDER BY max(checkpoint_id) DESC LIMIT {}")
    if isinstance(saver, SqliteSaver):
        return [row[0] for row in saver.conn.execute(query.format("?"), (limit,)).fetchall()]
    # Otherwise the PostgreSQL saver of _postgres_saver, on one connection (not a pool) with dict rows.
    conn = cast("Connection[DictRow]", cast("PostgresSaver", saver).conn)
    return [row["thread_id"] for row in conn.execute(query.format("%s"), (limit,)).fetchall()]

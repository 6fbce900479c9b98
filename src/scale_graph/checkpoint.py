"""Where threads are kept: the one checkpointer factory, used by the CLI and the server.

A *target* is either a SQLite file path or a ``postgresql://`` URL:

- default: ``$SCALE_CHECKPOINTER`` if set, else the SQLite file ``$SCALE_HOME/threads.sqlite``, where
  ``$SCALE_HOME`` defaults to ``$XDG_DATA_HOME/scale-graph`` (``~/.local/share/scale-graph``);
- ``postgresql://user@host:5432/db``: PostgreSQL (``pip install 'scale-graph[postgres]'``); the database is
  created when it does not exist yet, and the checkpoint tables on first use.

Runs on these checkpointers use durability :data:`DURABILITY` (``"sync"``): each superstep's checkpoint is
written before the next step starts, so a process killed mid-run keeps every finished step.

One run at a time per thread: :func:`thread_lock` holds a thread's run lock for the length of a run, in the store
itself, so two processes (or two threads of one) never run one thread at once. On SQLite it is an ``flock`` on a
file per thread in the directory ``<db>.locks`` beside the database; on PostgreSQL a session-level advisory lock
(``pg_try_advisory_lock``) on a 64-bit hash of the thread id. Either is let go by the operating system or the
server when the process dies, so a killed run never leaves its thread locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
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
LOCK_ATTEMPTS = 5
"""Tries at a thread's SQLite lock file when its holder removes it as we open it (each try is one ``flock``)."""
HOLDER_WAIT = 0.5
"""Seconds to wait for a lock holder to write who it is (it does so right after taking the lock)."""


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
                               connect_timeout=CONNECT_TIMEOUT, application_name=application_name())
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


# --- one run at a time per thread ----------------------------------------------------------------------------


def application_name() -> str:
    """How PostgreSQL shows this process (``pg_stat_activity``): ``scale-graph pid=N host=H``, at most 63 bytes."""
    return f"scale-graph pid={os.getpid()} host={socket.gethostname()}"[:63]


_NAMED = re.compile(r"scale-graph pid=(\d+) host=(\S+)")


@dataclass(frozen=True)
class LockHolder:
    """The process holding a thread's run lock, as far as the store can tell."""

    pid: int | None
    host: str | None
    since: str | None
    """When it took the lock (SQLite), or when its database session began (PostgreSQL); ISO 8601, UTC."""
    other: str | None = None
    """What the store says of a holder that did not name itself (e.g. a PostgreSQL session of another program)."""

    def __str__(self) -> str:
        if self.pid is None:
            who = self.other or "another process (it has not said which yet)"
        else:
            mine = self.pid == os.getpid() and self.host == socket.gethostname()
            who = f"pid {self.pid} on host {self.host}" + (" (this process)" if mine else "")
        return who + (f", since {self.since}" if self.since else "")


class ThreadLocked(RuntimeError):
    """Another run holds the thread's run lock; ``holder`` names its process."""

    def __init__(self, thread_id: str, holder: LockHolder) -> None:
        super().__init__(f"thread {thread_id} is being run by another process: {holder}")
        self.thread_id = thread_id
        self.holder = holder


Release = Callable[[], None]
"""Lets go of a run lock."""

_held: dict[tuple[str, str], tuple[int, int]] = {}
"""(store, thread id) → (the Python thread holding the run lock, how deep it has entered it)."""
_held_guard = threading.Lock()


@contextmanager
def thread_lock(saver: BaseCheckpointSaver[str], thread_id: str) -> Iterator[None]:
    """Hold ``thread_id``'s run lock in ``saver``'s store for the block; :class:`ThreadLocked` when another run has it.

    Re-entrant in the Python thread that holds it (a command that takes it around a run that takes it again);
    refused to any other thread or process. The SQLite and PostgreSQL stores of :func:`open_checkpointer` lock
    across processes and hosts sharing the store (see the module docstring); any other saver (an in-memory one)
    locks within this process only.
    """
    store, acquire = _locker(saver)
    key, me = (store, thread_id), threading.get_ident()
    with _held_guard:
        owner, depth = _held.get(key, (me, 0))
        if owner != me:
            raise ThreadLocked(thread_id, LockHolder(os.getpid(), socket.gethostname(), None))
        _held[key] = (me, depth + 1)
    release: Release | None = None
    try:
        if depth == 0:
            release = acquire(thread_id)
        yield
    finally:
        try:
            if release is not None:
                release()
        finally:
            _leave(key)


def _leave(key: tuple[str, str]) -> None:
    with _held_guard:
        owner, depth = _held[key]
        if depth > 1:
            _held[key] = (owner, depth - 1)
        else:
            del _held[key]



def _locker(saver: BaseCheckpointSaver[str]) -> tuple[str, Callable[[str], Release | None]]:
    """The store's identity, and the function that takes a thread's lock there (returning its release)."""
    if isinstance(saver, SqliteSaver):
        rows = saver.conn.execute("PRAGMA database_list").fetchall()
        file = next((row[2] for row in rows if row[1] == "main"), "")
        if file:
            return f"sqlite:{file}", lambda thread_id: _file_lock(Path(file), thread_id)
        return f"sqlite:{id(saver.conn)}", lambda thread_id: None  # in memory: this process only
    if type(saver).__module__.startswith("langgraph.checkpoint.postgres"):
        import psycopg

        conn = getattr(saver, "conn", None)
        if isinstance(conn, psycopg.Connection):  # one connection, as _postgres_saver opens it (not a pool)
            info = conn.info
            return (f"postgresql://{info.host}:{info.port}/{info.dbname}",
                    lambda thread_id: _advisory_lock(conn, thread_id))
    return f"{type(saver).__name__}:{id(saver)}", lambda thread_id: None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _file_lock(db: Path, thread_id: str) -> Release:
    """``flock`` the thread's file in ``<db>.locks``; the file says who holds it and is removed on release."""
    directory = db.with_name(db.name + ".locks")
    path = directory / f"{hashlib.sha256(thread_id.encode()).hexdigest()[:32]}.lock"
    try:
        directory.mkdir(exist_ok=True)
        for _ in range(LOCK_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _file_holder(fd)
                os.close(fd)
                raise ThreadLocked(thread_id, holder) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # its last holder removed the file as we opened it: lock the one now at the path
        else:
            raise ThreadLocked(thread_id, LockHolder(None, None, None))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "thread_id": thread_id}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except OSError as exc:
        raise CheckpointerError(f"cannot lock thread {thread_id} in {directory}: {exc}") from exc

    def release() -> None:
        try:
            path.unlink(missing_ok=True)  # before letting go, so no one locks a file that is no longer the lock
        finally:
            os.close(fd)

    return release


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk, opened = path.stat(), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _file_holder(fd: int) -> LockHolder:
    """Who a lock file says holds it (it writes that right after taking the lock: wait a moment for it)."""
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        try:
            record = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            record = None
        if isinstance(record, dict) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if not isinstance(record, dict):
        return LockHolder(None, None, None)
    pid = record.get("pid")
    return LockHolder(pid if isinstance(pid, int) else None, str(record.get("host") or "?"),
                      str(record["since"]) if record.get("since") else None)


def _advisory_key(thread_id: str) -> int:
    """The thread's PostgreSQL advisory-lock key: a signed 64-bit hash of its id."""
    digest = hashlib.sha256(f"scale-graph thread {thread_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _advisory_lock(conn: Connection[DictRow], thread_id: str) -> Release:
    """A session-level advisory lock on the saver's connection: PostgreSQL lets it go if the session ends."""
    import psycopg
    from psycopg.rows import tuple_row

    key = _advisory_key(thread_id)
    with conn.cursor(row_factory=tuple_row) as cur:
        locked = cur.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (locked and locked[0]):
            raise ThreadLocked(thread_id, _session_holder(cur, key))

    def release() -> None:
        try:
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error:
            pass  # the session is gone, and the lock with it

    return release


_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
"""


def _session_holder(cur: Any, key: int) -> LockHolder:
    """The process whose PostgreSQL session holds the advisory lock ``key`` (named by its application_name)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = cur.execute(_HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
    if row is None:  # let go between our try and this look
        return LockHolder(None, None, None)
    backend, name, started = row
    since = started.astimezone(UTC).isoformat(timespec="seconds") if started else None
    named = _NAMED.fullmatch(name or "")
    if named:
        return LockHolder(int(named[1]), named[2], since)
    return LockHolder(None, None, since, other=f"PostgreSQL session {backend} ({name or 'no application name'})")

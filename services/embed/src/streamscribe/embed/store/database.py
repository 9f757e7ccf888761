"""One SQLite database file shared by every embed process on a host and by the CLI.

The binding is `apsw`, not the standard `sqlite3`: CPython builds (pyenv's among them) may be
compiled without `enable_load_extension`, and sqlite-vec is a loadable extension. apsw ships
SQLite's own amalgamation in its wheel (FTS5 included, extension loading on), so the same code
works on any CPython; it also leaves transactions to us (no implicit BEGIN), which is what
`BEGIN IMMEDIATE` write transactions need.

WAL lets readers (the CLI, `status`) run while a writer commits; the busy timeout makes a second
writer wait for the first instead of failing. Write transactions start with `BEGIN IMMEDIATE`,
so two processes never both read and then both try to upgrade to a write lock (a deadlock that
SQLite would break by failing one of them at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import apsw

from streamscribe.common.errors import TransientError

Row = tuple[Any, ...]


def connect(path: Path, busy_timeout_ms: int, vectors: bool = False) -> apsw.Connection:
    """Open (creating) the database in WAL mode; with `vectors`, load sqlite-vec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = apsw.Connection(str(path))
        connection.set_busy_timeout(busy_timeout_ms)
        if vectors:
            import sqlite_vec  # only here: its Python module imports numpy, which a reader
            # of the ledger alone (`up`, `status`) does not need

            connection.enable_load_extension(True)
            connection.load_extension(sqlite_vec.loadable_path())
            connection.enable_load_extension(False)
        _wal(connection, busy_timeout_ms)
        # NORMAL in WAL mode: a commit survives a process crash (kill -9), only a power cut may
        # lose the last transactions; the work is redelivered from Kafka then anyway
        connection.execute("PRAGMA synchronous=NORMAL")
    except apsw.Error as exc:
        raise TransientError(f"cannot open the database {path.name}: {exc}") from exc
    return connection


def _wal(connection: apsw.Connection, busy_timeout_ms: int) -> None:
    """WAL mode, which the file keeps once set. Switching to it is not covered by the busy
    timeout: processes opening a new file at once (two embed replicas, each with its consumer's
    and its API's connection) get "database is locked" at once, so they try again here."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            (mode,) = next(connection.execute("PRAGMA journal_mode"))
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except apsw.BusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def write(connection: apsw.Connection) -> Iterator[apsw.Connection]:
    """One write transaction, taken at once (`BEGIN IMMEDIATE`); rolled back on error."""
    with failures("writing"):
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


@contextmanager
def read(connection: apsw.Connection) -> Iterator[apsw.Connection]:
    """One consistent snapshot for several queries (a deferred transaction, never writing)."""
    with failures("reading"):
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")


@contextmanager
def failures(action: str) -> Iterator[None]:
    """SQLite errors that may pass (busy past the timeout, I/O) as TransientError."""
    try:
        yield
    except (apsw.BusyError, apsw.IOError, apsw.CantOpenError, apsw.FullError) as exc:
        raise TransientError(f"database {action} failed: {exc}") from exc


def rows(connection: apsw.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
    """Every row of one query. Typed `Any` per column: the schema, not apsw, knows the types."""
    return cast(list[Row], connection.execute(sql, args).fetchall())


def iso(seconds: float | None) -> str | None:
    """A stored time (seconds since the epoch) as ISO 8601 UTC, as the API shows it."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

"""The backends the contract suite runs on, each opened as an `Index` (its ledger beside it)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import Enum
from functools import partial
from pathlib import Path

import apsw
import psycopg
from pydantic import SecretStr

from streamscribe.embed.settings import PineconeSection, PostgresSection
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Ledger
from streamscribe.embed.store.pinecone import PineconeVectors
from streamscribe.embed.store.postgres import PostgresVectors
from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.pinecone_standin import PineconeStandin
from tests.postgres_server import PostgresServer


class Flaw(Enum):
    """How a backend misbehaves in a test, in its own way."""

    TRANSIENT = "transient"  # fails a few times, then works
    DELAYED = "delayed"  # writes become visible to reads only later


Backend = Callable[[Path, int, "Flaw | None"], AbstractContextManager[Index]]


@contextmanager
def sqlite_index(directory: Path, dimension: int, flaw: Flaw | None) -> Iterator[Index]:
    path = directory / "streamscribe.db"
    index = Index(Ledger(path), SQLiteVectors(path, busy_timeout_ms=30_000))
    holder = hold_write_lock(path, 1.5) if flaw is Flaw.TRANSIENT else None
    try:
        yield index
    finally:
        if holder is not None:
            holder.join(10)
        index.close()


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's long write transaction on the file: a writer must wait it out."""
    locked = threading.Event()

    def hold() -> None:
        connection = apsw.Connection(str(path))
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


@contextmanager
def pinecone_standin_index(directory: Path, dimension: int, flaw: Flaw | None) -> Iterator[Index]:
    """Pinecone's wire format on loopback: 429 twice (TRANSIENT), or writes visible to reads
    only 2 s later (DELAYED). The ledger stays SQLite, as in production."""
    with PineconeStandin(
        api_key="contract-key",
        dimension=dimension,
        fail_first=2 if flaw is Flaw.TRANSIENT else 0,
        visibility_delay=2.0 if flaw is Flaw.DELAYED else 0.0,
    ) as server:
        section = PineconeSection(
            api_key=SecretStr("contract-key"), index_host=server.url, backoff_seconds=0.05
        )
        index = Index(Ledger(directory / "streamscribe.db"), PineconeVectors(section, dimension))
        try:
            yield index
        finally:
            index.close()


@contextmanager
def pinecone_live_index(directory: Path, dimension: int, flaw: Flaw | None) -> Iterator[Index]:
    """The real service (`make test-pinecone`): a namespace of its own per test.
    Its flaws are its own: it is eventually consistent and rate-limits when it likes."""
    key = os.environ["PINECONE_API_KEY"]
    section = PineconeSection(
        api_key=SecretStr(key),
        index_name=os.environ.get("PINECONE_INDEX_NAME", "streamscribe-contract"),
        namespace=f"contract-{uuid.uuid4().hex[:12]}",
    )
    vectors = PineconeVectors(section, dimension)
    index = Index(Ledger(directory / "streamscribe.db"), vectors)
    try:
        yield index
    finally:
        index.close()


def postgres_backend(server: PostgresServer) -> Backend:
    """The postgres backend on the session's server (`postgres_server` in tests/conftest.py)."""
    return partial(postgres_index, server)


@contextmanager
def postgres_index(
    server: PostgresServer, directory: Path, dimension: int, flaw: Flaw | None
) -> Iterator[Index]:
    """A database of its own on a real PostgreSQL with pgvector; the ledger stays SQLite (its
    PostgreSQL version is later work). TRANSIENT: the server drops every connection the
    backend holds (the next statement fails) and another transaction locks the table until a
    writer waits on it. DELAYED: none, PostgreSQL reads what it committed."""
    url = server.database()
    section = PostgresSection(url=SecretStr(url), backoff_seconds=0.05)
    index = Index(Ledger(directory / "streamscribe.db"), PostgresVectors(section, dimension))
    holder = None
    if flaw is Flaw.TRANSIENT:
        drop_connections(url)
        holder = lock_until_waited_on(url, "passages")
    try:
        yield index
    finally:
        if holder is not None:
            holder.join(30)
        index.close()
        server.drop(url)


def drop_connections(url: str) -> None:
    """What a restart or a failover does to a pool: its connections die under it."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def lock_until_waited_on(url: str, table: str, timeout: float = 20.0) -> threading.Thread:
    """Another transaction holding `table` exclusively until some statement waits for it."""
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as watcher:
            holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            deadline = time.monotonic() + timeout
            while not _waited_on(watcher, table) and time.monotonic() < deadline:
                threading.Event().wait(0.02)  # a bounded poll of pg_locks
            holder.commit()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def _waited_on(connection: psycopg.Connection[tuple[object, ...]], table: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted", (table,)
    ).fetchone()
    return bool(row and row[0])


BACKENDS: dict[str, Backend] = {"sqlite": sqlite_index, "pinecone": pinecone_standin_index}
SERVED = {"postgres": postgres_backend}
"""Backends on a server the session starts once: each takes the server its fixture yields."""
if os.environ.get("PINECONE_API_KEY"):
    BACKENDS["pinecone-live"] = pinecone_live_index

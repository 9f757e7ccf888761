"""The backends the contract suite runs on, each opened as an `Index` (its ledger beside it)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import Enum
from pathlib import Path

import apsw
from pydantic import SecretStr

from streamscribe.embed.settings import PineconeSection
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Ledger
from streamscribe.embed.store.pinecone import PineconeVectors
from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.pinecone_standin import PineconeStandin


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


BACKENDS: dict[str, Backend] = {"sqlite": sqlite_index, "pinecone": pinecone_standin_index}
if os.environ.get("PINECONE_API_KEY"):
    BACKENDS["pinecone-live"] = pinecone_live_index

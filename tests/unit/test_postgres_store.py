"""PostgresVectors on a real PostgreSQL with pgvector: what the contract suite does not ask —
its settings, a changed model, more hits than `ef_search`, English words, a server that is gone
(a `TransientError` without the password), the factory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import EmbedSettings, PostgresSection
from streamscribe.embed.store.factory import open_vectors
from streamscribe.embed.store.postgres import PostgresVectors
from tests.postgres_server import PostgresServer, free_port

DIM = 16
URL = "https://example.com/talk.mp3"


def unit_rows(n: int, seed: int) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def chunk_passages(texts: list[str], media_id: str = "m", seq: int = 0) -> list[Passage]:
    return [
        Passage(
            id=f"{media_id}:{seq}:{i}",
            media_id=media_id,
            seq=seq,
            index=i,
            start=float(i),
            end=i + 1.0,
            text=text,
        )
        for i, text in enumerate(texts)
    ]


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.database()
    yield url
    postgres_server.drop(url)


def open_store(url: str, **settings: object) -> PostgresVectors:
    return PostgresVectors(PostgresSection(url=SecretStr(url), **settings), DIM)  # type: ignore[arg-type]


def test_more_hits_than_ef_search_are_found_and_the_session_keeps_its_setting(
    database: str,
) -> None:
    with psycopg.connect(database, autocommit=True) as connection:
        # a table this small is searched exactly (a scan is cheaper): make it use the index
        connection.execute(f"ALTER DATABASE {database.rsplit('/', 1)[1]} SET enable_seqscan = off")
    store = open_store(database, ef_search=5, pool_size=1)
    rows = unit_rows(40, 1)
    store.upsert(chunk_passages([f"passage {i}" for i in range(40)]), rows, URL, [])
    try:
        for _ in range(8):  # past psycopg's prepare threshold, were it on
            hits = store.nearest(rows[7], 30)
            assert len(hits) == 30
            assert hits[0].id == "m:0:7"
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        with store._pool.connection() as connection:
            assert connection.execute("SHOW hnsw.ef_search").fetchone() == ("5",)
            plan = connection.execute("EXPLAIN SELECT id FROM passages ORDER BY embedding <=> "
                                      "%b LIMIT 30", (rows[7],)).fetchall()  # fmt: skip
        assert "Index Scan using passages_embedding" in str(plan)
    finally:
        store.close()


def test_keyword_search_stems_english_and_takes_any_text(database: str) -> None:
    store = open_store(database)
    texts = ["the budgets were approved", "a budget for roads", "nothing of interest here"]
    store.upsert(chunk_passages(texts), unit_rows(3, 2), URL, [])
    try:
        assert {hit.id for hit in store.keyword("Budget", 10)} == {"m:0:0", "m:0:1"}
        assert store.keyword("roads budgets", 10)[0].id == "m:0:1"
        assert store.keyword("the of a", 10) == []  # stop words only: nothing to rank by
        assert store.keyword("it's -budget- | & ! :* 'roads' (or)", 10)  # no query syntax
        assert store.keyword("", 10) == []
    finally:
        store.close()


def test_a_chunk_written_again_replaces_its_passages(database: str) -> None:
    store = open_store(database)
    try:
        texts = ["alpha first", "alpha second", "alpha third"]
        store.upsert(chunk_passages(texts), unit_rows(3, 3), URL, [])
        store.upsert(chunk_passages(["alpha again"]), unit_rows(1, 4), URL, ["m:0:1", "m:0:2"])
        store.upsert(chunk_passages(["other"], seq=1), unit_rows(1, 5), URL, [])
        assert store.count() == 2
        assert [hit.text for hit in store.keyword("alpha", 5)] == ["alpha again"]
        store.delete_media("m")
        store.delete_media("m")
        assert store.count() == 0
    finally:
        store.close()


def test_another_model_dimension_is_refused(database: str) -> None:
    open_store(database).close()
    with pytest.raises(ConfigError, match="hold 16"):
        PostgresVectors(PostgresSection(url=SecretStr(database)), DIM * 2)


def test_a_server_that_is_gone_is_transient_and_the_password_never_shows() -> None:
    url = f"postgresql://streamscribe:hunter2-secret@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(TransientError) as refused:
        open_store(url, connect_timeout_seconds=2)
    assert "hunter2-secret" not in str(refused.value)
    with pytest.raises(ConfigError, match="not a PostgreSQL connection URL") as unreadable:
        open_store("postgresql://streamscribe:hunter2%zz@127.0.0.1/nothing")
    assert "hunter2" not in str(unreadable.value)


def test_a_server_stopped_under_the_pool_fails_transiently_after_max_attempts() -> None:
    with PostgresServer() as server:
        store = open_store(
            server.url, max_attempts=2, backoff_seconds=0.01, connect_timeout_seconds=1
        )
        try:
            server.stop()
            with pytest.raises(TransientError, match="failed 2 times"):
                store.count()
        finally:
            store.close()


def test_settings_name_the_database_and_refuse_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    monkeypatch.setenv("STREAMSCRIBE_EMBED__STORE", "postgres")
    with pytest.raises(ValidationError, match="STREAMSCRIBE_DATABASE__URL"):
        EmbedSettings()
    monkeypatch.setenv("STREAMSCRIBE_DATABASE__URL", "mysql://x@h/db")
    with pytest.raises(ValidationError, match="postgresql://"):
        EmbedSettings()
    with pytest.raises(ValidationError, match="twice hnsw_m"):
        PostgresSection(hnsw_m=32, ef_construction=40)
    monkeypatch.setenv("STREAMSCRIBE_DATABASE__URL", database)
    settings = EmbedSettings()
    assert database not in repr(settings)
    store = open_vectors(settings, DIM)
    try:
        assert isinstance(store, PostgresVectors)
        assert store.count() == 0
    finally:
        store.close()
    with psycopg.connect(database) as connection:
        indexes = connection.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'passages'")
        definitions = " ".join(row[0] for row in indexes.fetchall())
    assert "hnsw (embedding vector_cosine_ops)" in definitions
    assert "gin (tsv)" in definitions

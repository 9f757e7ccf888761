"""`PostgresVectors`: passages, their vectors and their words in PostgreSQL with pgvector.

One table, `passages`: a row per passage with its `vector(dimension)` and a `tsvector` that
PostgreSQL generates from the text (English: stemmed, stop words dropped), so a passage's
vector and words change in the same statement and no reader sees one without the other.

- Vectors: an HNSW index under cosine distance (`vector_cosine_ops`), approximate. Each
  search asks for at least as many candidates (`hnsw.ef_search`) as hits, or HNSW returns fewer.
- Words: a GIN index on the `tsvector`; a query's words are ORed (any may match, as SQLite's
  FTS5 query does) and ranked by `ts_rank_cd` (cover density: more and closer matches first).
- Writers of one chunk take a transaction-scoped advisory lock on it, so two processes
  writing the same chunk (a redelivery) queue up instead of deadlocking on its rows.
- A connection pool (psycopg_pool); psycopg's automatic prepared statements are off: a
  statement prepared after 5 runs keeps the plan of the settings it was prepared under, and
  poolers in transaction mode (PgBouncer) do not keep prepared statements.
- A lost connection, a serialization failure or a deadlock is tried again a few times
  (`max_attempts`), then surfaces as `TransientError`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import PostgresSection
from streamscribe.embed.store.base import Hit, Vectors, check_vectors
from streamscribe.embed.store.sqlite import STOPWORDS, WORD

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[TupleRow]

SCHEMA_LOCK = 7_315_001
"""Advisory lock key held while creating the schema: processes starting together queue."""
MAX_QUERY_WORDS = 32
TABLE = """
CREATE TABLE IF NOT EXISTS passages (
    id text PRIMARY KEY,
    media_id text NOT NULL,
    seq integer NOT NULL,
    idx integer NOT NULL,
    start double precision NOT NULL,
    "end" double precision NOT NULL,
    text text NOT NULL,
    source_url text NOT NULL,
    embedding vector({dimension}) NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
)"""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS passages_by_chunk ON passages (media_id, seq)",
    "CREATE INDEX IF NOT EXISTS passages_tsv ON passages USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS passages_embedding ON passages USING hnsw "
    "(embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction})",
)
HIT_COLUMNS = 'id, media_id, source_url, start, "end", text'
UPSERT = (
    'INSERT INTO passages (id, media_id, seq, idx, start, "end", text, source_url, embedding) '
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %b) ON CONFLICT (id) DO UPDATE SET "
    "media_id = excluded.media_id, seq = excluded.seq, idx = excluded.idx, "
    'start = excluded.start, "end" = excluded."end", text = excluded.text, '
    "source_url = excluded.source_url, embedding = excluded.embedding"
)
NEAREST = (
    f"SELECT {HIT_COLUMNS}, embedding <=> %(q)b AS distance FROM passages "
    "ORDER BY embedding <=> %(q)b LIMIT %(k)s"
)
KEYWORD = (
    f"SELECT {HIT_COLUMNS}, ts_rank_cd(tsv, query) AS rank "
    "FROM passages, websearch_to_tsquery('english', %s) AS query "
    "WHERE tsv @@ query ORDER BY rank DESC, id LIMIT %s"
)


class PostgresVectors:
    """The `VectorBackend` on a PostgreSQL database; any number of processes may share it."""

    keyword_search = True

    def __init__(self, section: PostgresSection, dimension: int) -> None:
        if section.url is None:
            raise ConfigError("store postgres needs the database url (STREAMSCRIBE_DATABASE__URL)")
        self._section = section
        self._dimension = dimension
        self._url = section.url.get_secret_value()
        self._secret = _password(self._url)
        self._guard("create the schema", self._create_schema)
        self._pool = ConnectionPool(
            self._url,
            min_size=1,
            max_size=section.pool_size,
            timeout=section.connect_timeout_seconds,  # a caller waits no longer for a connection
            kwargs=self._connect_args(),
            configure=register_vector,
            open=False,
            name="streamscribe-passages",
        )
        self._guard("open the pool", self._open_pool)

    # -- VectorBackend ---------------------------------------------------------------------

    def upsert(
        self,
        passages: Sequence[Passage],
        vectors: Vectors,
        source_url: str,
        stale_ids: Sequence[str],
    ) -> None:
        matrix = check_vectors(passages, vectors)
        if passages and matrix.shape[1] != self._dimension:
            raise ValueError(f"vectors have {matrix.shape[1]} dimensions, not {self._dimension}")
        rows = sorted(  # in id order: two writers of one chunk lock its rows in the same order
            (p.id, p.media_id, p.seq, p.index, p.start, p.end, p.text, source_url, row)
            for p, row in zip(passages, matrix, strict=True)
        )
        chunk = (passages[0].media_id, passages[0].seq) if passages else None
        self._call(
            f"upsert of {len(rows)} passages",
            lambda connection: _write_chunk(connection, chunk, rows, list(stale_ids)),
        )

    def delete_media(self, media_id: str) -> None:
        self._call(
            f"delete of media {media_id}",
            lambda c: c.execute("DELETE FROM passages WHERE media_id = %s", (media_id,)),
        )

    def nearest(self, vector: Vectors, k: int) -> list[Hit]:
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)

        def search(connection: Connection) -> list[Any]:
            if k > self._section.ef_search:
                # for this transaction only: the connection goes back to the pool as it was
                connection.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(k),))
            return connection.execute(NEAREST, {"q": query, "k": k}).fetchall()

        rows = self._call("vector search", search)
        return [_hit(row, 1.0 - float(row[6])) for row in rows]

    def keyword(self, query: str, k: int) -> list[Hit]:
        words = query_words(query)
        if k <= 0 or not words:
            return []
        rows = self._call(
            "keyword search",
            lambda c: c.execute(KEYWORD, (" or ".join(words), k)).fetchall(),
        )
        return [_hit(row, float(row[6])) for row in rows]

    def count(self) -> int:
        rows = self._call("count", lambda c: c.execute("SELECT count(*) FROM passages").fetchall())
        return int(rows[0][0])

    def close(self) -> None:
        self._pool.close()

    # -- connections -----------------------------------------------------------------------

    def _connect_args(self) -> dict[str, Any]:
        return {
            "autocommit": True,  # each `_call` is one explicit transaction
            "prepare_threshold": None,  # see the module doc
            "connect_timeout": max(1, round(self._section.connect_timeout_seconds)),
            # the session's default, read when pgvector loads (k above it raises it per search)
            "options": f"-c hnsw.ef_search={self._section.ef_search}",
        }

    def _open_pool(self) -> None:
        try:
            self._pool.open(wait=True, timeout=self._section.connect_timeout_seconds)
        except BaseException:
            self._pool.close()  # or its workers go on connecting in the background
            raise

    def _create_schema(self) -> None:
        section = self._section
        build = {"m": section.hnsw_m, "ef_construction": section.ef_construction}
        with (
            psycopg.connect(self._url, **self._connect_args()) as connection,
            connection.transaction(),
        ):
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            _create_extension(connection)
            connection.execute(sql.SQL(TABLE).format(dimension=self._dimension))
            self._check_dimension(connection)
            for statement in INDEXES:
                connection.execute(sql.SQL(statement).format(**build))

    def _check_dimension(self, connection: Connection) -> None:
        row = connection.execute(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'passages'::regclass AND attname = 'embedding'"
        ).fetchone()
        stored = int(row[0]) if row else None
        if stored != self._dimension:
            raise ConfigError(
                f"vectors have {self._dimension} dimensions but the database's passages hold "
                f"{stored}: the embedding model changed; use another database or re-index"
            )

    def _call(self, what: str, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction on a pooled connection, tried again while its failure
        may pass (a connection the server dropped is discarded by the pool)."""
        delay = self._section.backoff_seconds
        for attempt in range(1, self._section.max_attempts + 1):
            try:
                with self._pool.connection() as connection, connection.transaction():
                    return work(connection)
            except psycopg.OperationalError as exc:
                if attempt == self._section.max_attempts:
                    raise TransientError(
                        self._scrub(f"postgres {what} failed {attempt} times: {exc}")
                    ) from exc
                wait = delay * random.uniform(0.5, 1.0)  # jitter: writers retry apart
                log.warning("postgres %s: %s; try %d in %.2fs", what, self._scrub(str(exc)),
                            attempt + 1, wait)  # fmt: skip
                time.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable: max_attempts >= 1")

    def _guard(self, what: str, step: Callable[[], None]) -> None:
        """A step of opening: a server that is not there yet may come; a refusal will not."""
        try:
            step()
        except (errors.InsufficientPrivilege, errors.InvalidPassword) as exc:
            raise ConfigError(self._scrub(f"postgres: cannot {what}: {exc}")) from exc
        except psycopg.OperationalError as exc:
            raise TransientError(self._scrub(f"postgres: cannot {what}: {exc}")) from exc

    def _scrub(self, message: str) -> str:
        """The message without the password, whatever the server or libpq echoed."""
        return message.replace(self._secret, "***") if self._secret else message


def _write_chunk(
    connection: Connection,
    chunk: tuple[str, int] | None,
    rows: list[tuple[Any, ...]],
    stale_ids: list[str],
) -> None:
    """The passages of one chunk in place of those it had, and the stale ids gone."""
    if chunk is not None:
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s), %s)", chunk)
        # the chunk is replaced whole, as in SQLite: rows of it this run has not go
        connection.execute(
            "DELETE FROM passages WHERE media_id = %s AND seq = %s AND id <> ALL(%s)",
            (*chunk, [row[0] for row in rows]),
        )
    if stale_ids:
        connection.execute("DELETE FROM passages WHERE id = ANY(%s)", (stale_ids,))
    with connection.cursor() as cursor:
        cursor.executemany(UPSERT, rows)


def _password(url: str) -> str:
    """The URL's password, to scrub from messages; a URL libpq cannot read is a setting to fix
    (said without the URL, which may hold the password)."""
    try:
        return str(conninfo_to_dict(url).get("password") or "")
    except psycopg.ProgrammingError:
        raise ConfigError("the database url is not a PostgreSQL connection URL") from None


def _create_extension(connection: Connection) -> None:
    """pgvector's extension, unless it is there: creating it takes a superuser (or the
    database's owner when an administrator has marked it trusted)."""
    found = connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if found is None:
        try:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except errors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"postgres: the vector extension is missing and this user cannot create it "
                f"({exc}): run CREATE EXTENSION vector in the database as a superuser"
            ) from exc


def query_words(query: str) -> list[str]:
    """The words of a user's query, once each, without the stop words that nearly every
    passage has (English's own list drops more): `websearch_to_tsquery` ORs them."""
    words = dict.fromkeys(WORD.findall(query.lower()))
    return [word for word in words if word not in STOPWORDS][:MAX_QUERY_WORDS]


def _hit(row: Any, score: float) -> Hit:
    return Hit(
        id=row[0],
        media_id=row[1],
        source_url=row[2],
        start=float(row[3]),
        end=float(row[4]),
        text=row[5],
        score=score,
    )

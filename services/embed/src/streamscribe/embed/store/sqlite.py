"""The embedded vector backend: passages in the SQLite database beside the ledger.

- `passages`: one row per passage (deterministic text id, chunk, times, text, source URL).
- `passages_vec`: a sqlite-vec `vec0` table of float32 vectors under cosine distance, created on
  the first upsert, when the dimension is known (kept in `vec_meta`).
- `passages_fts`: FTS5 over the passages' text for keyword search (BM25). Contentless with
  deletes (`contentless_delete=1`): the text is stored once, in `passages`.

The three share rowids and change together in one write transaction, so a reader never sees a
passage in one and not the other, and two processes writing the same chunk leave it once.
Search is exact (brute force over every vector): 200 000 passages of 384 floats are 300 MB on
disk but read through SQLite's page cache, not held in the process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import numpy.typing as npt

from streamscribe.common.errors import ConfigError
from streamscribe.embed.passages import Passage
from streamscribe.embed.store import database
from streamscribe.embed.store.base import Hit, Vectors, check_vectors

SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    media_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    text TEXT NOT NULL,
    source_url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_by_chunk ON passages (media_id, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
    text, content='', contentless_delete=1, tokenize='porter unicode61'
);
CREATE TABLE IF NOT EXISTS vec_meta (dimension INTEGER NOT NULL);
"""
HIT_COLUMNS = "p.id, p.media_id, p.source_url, p.start, p.end, p.text"
WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = """a about after all also an and any are as at be been but by can could did do does
for from had has have he her his how i if in into is it its just me more my no not of on one or
our out she so some than that the their them then there these they this to up us was we were
what when where which who why will with would you your"""
STOPWORDS = frozenset(_STOPWORDS.split())
"""English words in nearly every passage: in an OR query each would make BM25 score almost the
whole index (measured: 250 ms hybrid p50 at 200 000 passages with them, see the benchmarks)
while adding nothing to the ranking that the rarer words do not."""


class SQLiteVectors:
    """VectorBackend on the SQLite database file; several processes may share it."""

    keyword_search = True

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self._db = database.connect(path, busy_timeout_ms, vectors=True)
        with database.write(self._db) as db:
            db.execute(SCHEMA)

    def upsert(
        self,
        passages: Sequence[Passage],
        vectors: Vectors,
        source_url: str,
        stale_ids: Sequence[str],
    ) -> None:
        matrix = check_vectors(passages, vectors)
        with database.write(self._db) as db:
            if passages:
                self._ensure_vec_table(db, matrix.shape[1])
                first = passages[0]
                _delete(db, "media_id = ? AND seq = ?", (first.media_id, first.seq))
            for stale in stale_ids:
                _delete(db, "id = ?", (stale,))
            for passage, vector in zip(passages, matrix, strict=True):
                _insert(db, passage, vector, source_url)

    def delete_media(self, media_id: str) -> None:
        """Delete the media's passages from the three tables in one write transaction."""
        with database.write(self._db) as db:
            _delete(db, "media_id = ?", (media_id,))

    def nearest(self, vector: Vectors, k: int) -> list[Hit]:
        if k <= 0 or self._dimension() is None:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tobytes()
        with database.failures("searching"):
            rows = database.rows(
                self._db,
                "WITH knn AS (SELECT rowid, distance FROM passages_vec "
                "WHERE embedding MATCH ? AND k = ?) "
                f"SELECT {HIT_COLUMNS}, knn.distance FROM knn JOIN passages p "
                "ON p.rowid = knn.rowid ORDER BY knn.distance",
                (query, k),
            )
        return [_hit(row, 1.0 - row[6]) for row in rows]

    def keyword(self, query: str, k: int) -> list[Hit]:
        match = fts_query(query)
        if k <= 0 or not match:
            return []
        with database.failures("searching"):
            rows = database.rows(
                self._db,
                "WITH found AS (SELECT rowid, bm25(passages_fts) AS rank FROM passages_fts "
                "WHERE passages_fts MATCH ? ORDER BY rank LIMIT ?) "
                f"SELECT {HIT_COLUMNS}, found.rank FROM found JOIN passages p "
                "ON p.rowid = found.rowid ORDER BY found.rank",
                (match, k),
            )
        # bm25() is lower-is-better (negative); a hit's score is higher-is-better
        return [_hit(row, -row[6]) for row in rows]

    def count(self) -> int:
        return self.counts()["passages"]

    def counts(self) -> dict[str, int]:
        """Rows in each of the three tables; equal unless something is broken."""
        with database.read(self._db) as db:
            counts = {
                name: int(database.rows(db, f"SELECT count(*) FROM {name}")[0][0])
                for name in ("passages", "passages_fts")
            }
            has_vec = self._dimension() is not None
            vec = database.rows(db, "SELECT count(*) FROM passages_vec") if has_vec else []
        counts["passages_vec"] = int(vec[0][0]) if vec else 0
        return counts

    def close(self) -> None:
        self._db.close()

    def _dimension(self) -> int | None:
        with database.failures("reading"):
            rows = database.rows(self._db, "SELECT dimension FROM vec_meta")
        return int(rows[0][0]) if rows else None

    def _ensure_vec_table(self, db: apsw.Connection, dimension: int) -> None:
        stored = self._dimension()
        if stored is None:
            db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS passages_vec USING "
                f"vec0(embedding float[{int(dimension)}] distance_metric=cosine)"
            )
            db.execute("INSERT INTO vec_meta (dimension) VALUES (?)", (dimension,))
        elif stored != dimension:
            raise ConfigError(
                f"vectors have {dimension} dimensions but the database {self.path.name} holds "
                f"{stored}: the embedding model changed; use a new STREAMSCRIBE_SQLITE__PATH "
                "or re-index"
            )


def fts_query(query: str) -> str:
    """The words of a user's query as an FTS5 query: each word quoted (so no word is taken as
    FTS5 syntax), any of them may match; BM25 ranks passages with more and rarer words first.
    Stop words are left out unless the query has nothing else."""
    words = list(dict.fromkeys(WORD.findall(query.lower())))
    kept = [word for word in words if word not in STOPWORDS] or words
    return " OR ".join(f'"{word}"' for word in kept[:32])


def _delete(db: apsw.Connection, where: str, args: tuple[Any, ...]) -> None:
    rowids = [
        row[0] for row in database.rows(db, f"SELECT rowid FROM passages WHERE {where}", args)
    ]
    for rowid in rowids:
        db.execute("DELETE FROM passages_vec WHERE rowid = ?", (rowid,))
        db.execute("DELETE FROM passages_fts WHERE rowid = ?", (rowid,))
        db.execute("DELETE FROM passages WHERE rowid = ?", (rowid,))


def _insert(
    db: apsw.Connection, passage: Passage, vector: npt.NDArray[np.float32], source_url: str
) -> None:
    db.execute(
        "INSERT INTO passages (id, media_id, seq, idx, start, end, text, source_url) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            passage.id, passage.media_id, passage.seq, passage.index,
            passage.start, passage.end, passage.text, source_url,
        ),
    )  # fmt: skip
    rowid = db.last_insert_rowid()
    db.execute(
        "INSERT INTO passages_vec (rowid, embedding) VALUES (?, ?)", (rowid, vector.tobytes())
    )
    db.execute("INSERT INTO passages_fts (rowid, text) VALUES (?, ?)", (rowid, passage.text))


def _hit(row: Any, score: float) -> Hit:
    return Hit(
        id=row[0],
        media_id=row[1],
        source_url=row[2],
        start=row[3],
        end=row[4],
        text=row[5],
        score=float(score),
    )

"""The embedded vector store: a LanceDB directory holding two tables.

- `passages`: one row per passage with its vector, searched by cosine distance.
- `chunks`: one row per transcript chunk with its segments, for progress and transcript export.

The embed service writes while a CLI process reads the same directory, so every read checks for
the newest table version. Tables are created on the first upsert, when the vector size is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import cast

import lancedb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from lancedb.merge import LanceMergeInsertBuilder
from lancedb.query import LanceVectorQueryBuilder
from lancedb.table import Table
from pydantic import TypeAdapter

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.common.events import Segment, Transcript
from streamscribe.embed.passages import Passage
from streamscribe.embed.store import Hit, Progress, Vectors

PASSAGES = "passages"
CHUNKS = "chunks"
PAGE_CHUNKS = 50
"""Chunks read per query by `segments()`: bounds memory whatever the media's length."""

CHUNKS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("final", pa.bool_(), nullable=False),
        pa.field("chunk_count", pa.int64()),
        pa.field("source_url", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("segments_json", pa.string(), nullable=False),
    ]
)

_SEGMENTS = TypeAdapter(list[Segment])


def passages_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("media_id", pa.string(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
            pa.field("index", pa.int64(), nullable=False),
            pa.field("start", pa.float64(), nullable=False),
            pa.field("end", pa.float64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("source_url", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


class LanceDBStore:
    """VectorStore on a local LanceDB directory; several processes may open the same one."""

    def __init__(self, path: Path, cache_bytes: int = 4 * 2**20) -> None:
        self._path = path
        self._tables: dict[str, Table] = {}
        # bounded caches: with lancedb's defaults every version written stays cached
        session = lancedb.Session(
            index_cache_size_bytes=cache_bytes, metadata_cache_size_bytes=cache_bytes
        )
        with self._transient("open"):
            # interval 0: each read looks for a newer table version (one manifest check), so a
            # reader sees writes made after it opened; lancedb's default never looks again
            self._db = lancedb.connect(
                path, read_consistency_interval=timedelta(0), session=session
            )

    def upsert(self, transcript: Transcript, passages: Sequence[Passage], vectors: Vectors) -> None:
        matrix = _matrix(transcript, passages, vectors)
        with self._transient(f"storing chunk {transcript.chunk_id}"):
            self._write_passages(transcript, passages, matrix)
            # the chunk row goes last: a chunk counted by progress() always has its passages
            chunks = self._open(CHUNKS)
            if chunks is None:
                chunks = self._create(CHUNKS, CHUNKS_SCHEMA)
            _merge(chunks).execute(_chunk_rows(transcript))

    def progress(self, media_id: str) -> Progress:
        chunks = self._open(CHUNKS)
        if chunks is None:
            return Progress(stored=0, total=None, passages=0, source_url=None)
        of_media = f"media_id = {_quote(media_id)}"
        with self._transient(f"reading progress of {media_id}"):
            columns = ["seq", "final", "chunk_count", "source_url"]
            rows = _select(chunks, of_media, columns).to_pylist()
            passages = self._open(PASSAGES)
            passage_count = passages.count_rows(of_media) if passages is not None else 0
        return Progress(
            # distinct seqs, not rows: two workers racing on one chunk must not count it twice
            stored=len({row["seq"] for row in rows}),
            total=next((row["chunk_count"] for row in rows if row["final"]), None),
            passages=passage_count,
            source_url=rows[0]["source_url"] if rows else None,
        )

    def search(self, vector: Vectors, k: int) -> list[Hit]:
        passages = self._open(PASSAGES)
        if passages is None or k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._transient("searching"):
            # Table.search is typed for every query kind; a vector query builds a vector query
            nearest = cast(LanceVectorQueryBuilder, passages.search(query, "vector"))
            rows = (
                nearest.distance_type("cosine")
                .select(["media_id", "source_url", "start", "end", "text", "_distance"])
                .limit(k)
                .to_arrow()
                .to_pylist()
            )
        return [
            Hit(
                media_id=row["media_id"],
                source_url=row["source_url"],
                start=row["start"],
                end=row["end"],
                text=row["text"],
                score=1.0 - row["_distance"],
            )
            for row in rows
        ]

    def segments(self, media_id: str) -> Iterator[Segment]:
        chunks = self._open(CHUNKS)
        if chunks is None:
            return
        of_media = f"media_id = {_quote(media_id)}"
        # rows come back in storage order: list the (small) seq column, then read the segments
        # a page of chunks at a time, in seq order
        with self._transient(f"listing chunks of {media_id}"):
            seqs = sorted(_select(chunks, of_media, ["seq"])["seq"].to_pylist())
        for first in range(0, len(seqs), PAGE_CHUNKS):
            page = seqs[first : first + PAGE_CHUNKS]
            in_page = f"{of_media} AND seq >= {page[0]} AND seq <= {page[-1]}"
            with self._transient(f"reading segments of {media_id}"):
                rows = _select(chunks, in_page, ["seq", "segments_json"]).to_pylist()
            for row in sorted(rows, key=lambda row: int(row["seq"])):
                yield from _SEGMENTS.validate_json(row["segments_json"])

    def media_ids(self) -> list[str]:
        chunks = self._open(CHUNKS)
        if chunks is None:
            return []
        found: set[str] = set()
        with self._transient("listing media"):
            # batch by batch: the column has a row per chunk of every media; keep only distinct ids
            for batch in chunks.search().select(["media_id"]).limit(None).to_batches():
                found.update(batch.column("media_id").to_pylist())
        return sorted(found)

    def close(self) -> None:
        # lancedb holds no open files between calls; dropping the handles is all there is
        self._tables.clear()

    def _write_passages(
        self,
        transcript: Transcript,
        passages: Sequence[Passage],
        matrix: npt.NDArray[np.float32],
    ) -> None:
        table = self._open(PASSAGES)
        if table is None and not passages:
            return
        if table is None:
            table = self._create(PASSAGES, passages_schema(matrix.shape[1]))
        of_chunk = f"media_id = {_quote(transcript.media_id)} AND seq = {transcript.seq}"
        if not passages:
            table.delete(of_chunk)
            return
        self._check_dim(table, matrix.shape[1])
        # one commit that also drops the chunk's passages this run no longer produces
        merge = _merge(table).when_not_matched_by_source_delete(of_chunk)
        merge.execute(_passage_rows(transcript, passages, matrix, table.schema))

    def _open(self, name: str) -> Table | None:
        table = self._tables.get(name)
        if table is None:
            try:
                table = self._db.open_table(name)
            except ValueError:  # lancedb's "Table '…' was not found": nothing written yet
                return None
            except (OSError, RuntimeError) as exc:
                raise self._failure(f"opening table {name}", exc) from exc
            self._tables[name] = table
        return table

    def _create(self, name: str, schema: pa.Schema) -> Table:
        # exist_ok: another embed worker may create the same table at the same moment
        table = self._db.create_table(name, schema=schema, exist_ok=True)
        self._tables[name] = table
        return table

    def _check_dim(self, table: Table, dim: int) -> None:
        stored = table.schema.field("vector").type.list_size
        if stored != dim:
            raise ConfigError(
                f"vectors have {dim} dimensions but the store at {self._path} holds {stored}: "
                "the embedding model changed; use a new store directory or re-index"
            )

    @contextmanager
    def _transient(self, action: str) -> Iterator[None]:
        # lancedb reports I/O and commit conflicts as OSError or RuntimeError ("LanceError(IO)")
        try:
            yield
        except (OSError, RuntimeError) as exc:
            raise self._failure(action, exc) from exc

    def _failure(self, action: str, exc: Exception) -> TransientError:
        return TransientError(f"LanceDB store {self._path}: {action} failed: {exc}")


def _matrix(
    transcript: Transcript, passages: Sequence[Passage], vectors: Vectors
) -> npt.NDArray[np.float32]:
    """The vectors as float32 rows, checked against the passages they belong to."""
    if any(p.media_id != transcript.media_id or p.seq != transcript.seq for p in passages):
        raise ValueError(f"passages do not all belong to chunk {transcript.chunk_id}")
    if not passages:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(passages) or matrix.shape[1] == 0:
        raise ValueError(f"expected {len(passages)} vector rows, got shape {matrix.shape}")
    return matrix


def _merge(table: Table) -> LanceMergeInsertBuilder:
    return table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()


def _select(table: Table, where: str, columns: list[str]) -> pa.Table:
    return table.search().where(where).select(columns).limit(None).to_arrow()


def _passage_rows(
    transcript: Transcript,
    passages: Sequence[Passage],
    matrix: npt.NDArray[np.float32],
    schema: pa.Schema,
) -> pa.Table:
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    columns = {
        "id": [p.id for p in passages],
        "media_id": [p.media_id for p in passages],
        "seq": [p.seq for p in passages],
        "index": [p.index for p in passages],
        "start": [p.start for p in passages],
        "end": [p.end for p in passages],
        "text": [p.text for p in passages],
        "source_url": [transcript.source_url] * len(passages),
        "vector": pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]),
    }
    return pa.table(columns, schema=schema)


def _chunk_rows(transcript: Transcript) -> pa.Table:
    row = {
        "id": transcript.chunk_id,
        "media_id": transcript.media_id,
        "seq": transcript.seq,
        "final": transcript.final,
        "chunk_count": transcript.chunk_count,
        "source_url": transcript.source_url,
        "language": transcript.language,
        "segments_json": _SEGMENTS.dump_json(transcript.segments).decode(),
    }
    return pa.Table.from_pylist([row], schema=CHUNKS_SCHEMA)


def _quote(value: str) -> str:
    """A SQL string literal for lancedb filters."""
    return "'" + value.replace("'", "''") + "'"

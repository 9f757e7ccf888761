"""The media ledger: the durable record of every media, in the SQLite database.

One row per media (its newest run, state, chunk count, chunks and passages stored, failure,
times) and one row per stored chunk (its run, passage count and segments, for transcript export).
The embed stage writes it: a request when `media.requested` is seen, each chunk once its passages
are in the vector backend, a failure from `media.failed`. `status` and `transcript` read it, so
their cost does not depend on how much the topics hold, and nothing is lost when the memory-only
broker restarts.

Why here, whatever the vector backend: completion is counted inside one SQLite write transaction,
which gives read-your-writes and serialises two workers finishing the last two chunks. Pinecone is
eventually consistent, so a count read back from it could announce a media early or twice.

Runs: every submission of a media is a run with an id that sorts by time (`events.new_run`). A
newer run resets the row; events of an older run are ignored, so a re-submit is never announced
as indexed before the re-run's own last chunk is stored.

Forgetting: `forget` deletes a media's row and chunks and keeps a tombstone of the run it forgot
(one small row per forgotten media), so late events of that run, still in Kafka, change nothing,
while a later submission (a newer run) starts the media anew.

Callbacks: a run may carry a URL to POST its outcome to. `claim_callback` hands it out for one
try (with a lease, like the announcement of a completion), `callback_failed` releases it for the
next, `callback_delivered` confirms it; `callback_lease_left` says how long a claim of another
(perhaps dead) claimant still holds it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
from pydantic import TypeAdapter

from streamscribe.common.errors import TransientError
from streamscribe.common.events import MediaMetadata, Segment, Transcript
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store import database

PAGE_CHUNKS = 50
"""Chunks read per query by `segments()`: bounds memory whatever the media's length."""
ANNOUNCE_LEASE_SECONDS = 15.0
"""A claim to announce `media.indexed` not confirmed within this time may be taken over (the
claiming worker died between its claim and the broker's ack). Publishing takes milliseconds; a
chunk redelivered after a crash comes back after the group's session timeout (10 s) at least."""
CALLBACK_LEASE_SECONDS = 120.0
"""A claim to deliver a callback not confirmed within this time may be taken again: longer than
one delivery attempt (an HTTP POST with its timeout), so a slow receiver is not sent it twice."""
NO_RUN = "0"
"""The run of events that name none, when the media has no run yet (sorts before every id)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    state TEXT NOT NULL,
    source_url TEXT,
    chunk_count INTEGER,
    chunks_stored INTEGER NOT NULL DEFAULT 0,
    passages INTEGER NOT NULL DEFAULT 0,
    failed_stage TEXT,
    failed_reason TEXT,
    failed_detail TEXT,
    requested_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    indexed_at REAL,
    announce_claimed_at REAL,
    announced_at REAL,
    language TEXT,
    source TEXT,
    callback_url TEXT,
    callback_claimed_at REAL,
    callback_delivered_at REAL,
    title TEXT,
    author TEXT,
    published TEXT,
    duration REAL,
    webpage_url TEXT,
    thumbnail_url TEXT
);
CREATE INDEX IF NOT EXISTS media_by_update ON media (updated_at);
CREATE TABLE IF NOT EXISTS chunks (
    media_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    run TEXT NOT NULL,
    passages INTEGER NOT NULL,
    segments TEXT NOT NULL,
    redecoded REAL NOT NULL DEFAULT 0,
    uncovered REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (media_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forgotten (
    media_id TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    forgotten_at REAL NOT NULL
) WITHOUT ROWID;
"""

# columns added since the first schema, with their type: added to an older database on open
_ADDED_COLUMNS = {
    "language": "TEXT",
    "source": "TEXT",
    "callback_url": "TEXT",
    "callback_claimed_at": "REAL",
    "callback_delivered_at": "REAL",
    "title": "TEXT",
    "author": "TEXT",
    "published": "TEXT",
    "duration": "REAL",
    "webpage_url": "TEXT",
    "thumbnail_url": "TEXT",
    # the run's sums of its chunks' `redecoded` and `uncovered`, kept as `passages` is
    "speech_redecoded": "REAL NOT NULL DEFAULT 0",
    "speech_uncovered": "REAL NOT NULL DEFAULT 0",
}
# per chunk, the seconds of speech its transcriber decoded again and left without words
_ADDED_CHUNK_COLUMNS = {
    "redecoded": "REAL NOT NULL DEFAULT 0",
    "uncovered": "REAL NOT NULL DEFAULT 0",
}
METADATA = ("title", "author", "published", "duration", "webpage_url", "thumbnail_url")
"""The media's metadata columns, named as `MediaMetadata`'s fields; `published` ISO text."""
# a field known keeps its value when an event does not know it (`coalesce`)
_SET_METADATA = ", ".join(f"{name} = coalesce(?, {name})" for name in METADATA)
_SEGMENTS = TypeAdapter(list[Segment])
_COLUMNS = (
    "media_id, run, state, source_url, chunk_count, chunks_stored, passages, failed_stage, "
    "failed_reason, failed_detail, requested_at, updated_at, indexed_at, announce_claimed_at, "
    "language, source, callback_url, " + ", ".join(METADATA) + ", speech_redecoded, "
    "speech_uncovered"
)


@dataclass(frozen=True)
class MediaRecord:
    """What the ledger knows of one media (its newest run)."""

    media_id: str
    run: str
    state: str
    """`requested`, `transcribing` (chunks are being stored), `indexed` or `failed`."""
    source_url: str | None
    chunk_count: int | None
    chunks_stored: int
    passages: int
    failure: dict[str, str] | None
    requested_at: float
    updated_at: float
    indexed_at: float | None
    language: str | None = None
    """The language of the transcript (given, or detected by the model)."""
    source: str | None = None
    """`asr` (speech recognition) or `captions` (the media's own), once a chunk is stored."""
    callback_url: str | None = None
    """Where the run's outcome is POSTed; kept out of `as_dict` (it may carry a token)."""
    title: str | None = None
    author: str | None = None
    published: str | None = None
    """ISO date `YYYY-MM-DD`."""
    duration: float | None = None
    """Seconds, as the source declared them."""
    webpage_url: str | None = None
    thumbnail_url: str | None = None
    speech_redecoded: float = 0.0
    """Seconds of speech the transcribers decoded again (no word covered them at first)."""
    speech_uncovered: float = 0.0
    """Seconds of speech still without words: what the transcript may be missing."""

    @property
    def metadata(self) -> MediaMetadata | None:
        known = MediaMetadata.model_validate({name: getattr(self, name) for name in METADATA})
        return None if known.empty else known

    @property
    def complete(self) -> bool:
        return self.state == "indexed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "media_id": self.media_id,
            "state": self.state,
            "run": self.run,
            "source_url": self.source_url,
            "chunks": {"total": self.chunk_count, "stored": self.chunks_stored},
            "passages": self.passages,
            "language": self.language,
            "source": self.source,
            **{name: getattr(self, name) for name in METADATA},
            "failure": self.failure,
            "speech": {
                "redecoded_seconds": round(self.speech_redecoded, 2),
                "uncovered_seconds": round(self.speech_uncovered, 2),
            },
            "callback": self.callback_url is not None,
            "requested_at": database.iso(self.requested_at),
            "updated_at": database.iso(self.updated_at),
            "indexed_at": database.iso(self.indexed_at),
        }


class AnnouncementInFlightError(TransientError):
    """Another worker claimed announcing this completion moments ago and has not confirmed it:
    wait `wait` seconds, then `reclaim` (announcing at least once, almost always exactly once)."""

    def __init__(self, media_id: str, wait: float) -> None:
        super().__init__(f"media.indexed of {media_id} is being announced by another worker")
        self.media_id = media_id
        self.wait = wait


@dataclass(frozen=True)
class Announcement:
    """A completion this worker must announce with `media.indexed`, then confirm."""

    media_id: str
    run: str
    source_url: str
    chunk_count: int
    passages: int


class Ledger:
    """The ledger on one SQLite file; safe to share between processes (WAL, BEGIN IMMEDIATE)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self._db = database.connect(path, busy_timeout_ms)
        with database.write(self._db) as db:
            db.execute(SCHEMA)
            _add_columns(db)

    def request(
        self,
        media_id: str,
        run: str,
        source_url: str,
        callback_url: str | None = None,
        metadata: MediaMetadata | None = None,
    ) -> None:
        """A submission was seen: a newer run than the ledger's starts the media over. The
        run's `callback_url` is kept with it, also when its chunks were seen first, and so is
        what the request says of the media (`metadata`)."""
        with database.write(self._db) as db:
            row = _media(db, media_id)
            if _stale(db, media_id, run, row):
                return
            if row is None or run > row.run:
                _reset(db, media_id, run, "requested", source_url)
            if callback_url is not None:
                db.execute(
                    "UPDATE media SET callback_url = coalesce(callback_url, ?) "
                    "WHERE media_id = ? AND run = ?",
                    (callback_url, media_id, run),
                )
            _put_metadata(db, media_id, run, metadata)

    def admits(self, media_id: str, run: str | None) -> bool:
        """False for an event of a run older than the media's newest, or of a forgotten run
        (or older): it must change nothing."""
        with database.failures("reading"):
            row = _media(self._db, media_id)
            if row is not None and run is None:
                return True
            return not _stale(self._db, media_id, run or NO_RUN, row)

    def forget(self, media_id: str) -> bool:
        """Delete the media's record and chunks, leaving a tombstone of its run; False when
        the ledger does not know the media."""
        with database.write(self._db) as db:
            row = _media(db, media_id)
            if row is None:
                return False
            db.execute("DELETE FROM chunks WHERE media_id = ?", (media_id,))
            db.execute("DELETE FROM media WHERE media_id = ?", (media_id,))
            db.execute(
                "INSERT OR REPLACE INTO forgotten (media_id, run, forgotten_at) VALUES (?, ?, ?)",
                (media_id, row.run, time.time()),
            )
            return True

    def claim_callback(self, media_id: str, run: str) -> str | None:
        """The URL to POST this run's outcome to, handed out once: None when the run has no
        callback, is not the media's newest, was delivered, or another claim holds its lease
        (an unconfirmed claim is handed out again once the lease is over)."""
        now = time.time()
        with database.write(self._db) as db:
            rows = database.rows(
                db,
                "SELECT callback_url, callback_claimed_at FROM media WHERE media_id = ? "
                "AND run = ? AND callback_url IS NOT NULL AND callback_delivered_at IS NULL",
                (media_id, run),
            )
            if not rows or (rows[0][1] is not None and now - rows[0][1] < CALLBACK_LEASE_SECONDS):
                return None
            db.execute(
                "UPDATE media SET callback_claimed_at = ? WHERE media_id = ? AND run = ?",
                (now, media_id, run),
            )
            return str(rows[0][0])

    def callback_lease_left(self, media_id: str, run: str) -> float | None:
        """Seconds until the unconfirmed claim on this run's undelivered callback may be taken
        again (0 once over); None when no claim holds one."""
        with database.failures("reading"):
            rows = database.rows(
                self._db,
                "SELECT callback_claimed_at FROM media WHERE media_id = ? AND run = ? "
                "AND callback_url IS NOT NULL AND callback_delivered_at IS NULL "
                "AND callback_claimed_at IS NOT NULL",
                (media_id, run),
            )
        if not rows:
            return None
        return max(0.0, float(rows[0][0]) + CALLBACK_LEASE_SECONDS - time.time())

    def callback_delivered(self, media_id: str, run: str) -> None:
        """The receiver took the run's outcome: it is never handed out again."""
        self._set_callback(media_id, run, "callback_delivered_at = ?", time.time())

    def callback_failed(self, media_id: str, run: str) -> None:
        """This attempt failed: release the claim, so the next try (after the deliverer's
        backoff) may claim it at once rather than wait out the lease."""
        self._set_callback(media_id, run, "callback_claimed_at = ?", None)

    def _set_callback(self, media_id: str, run: str, assignment: str, value: object) -> None:
        with database.write(self._db) as db:
            db.execute(
                f"UPDATE media SET {assignment} WHERE media_id = ? AND run = ?",
                (value, media_id, run),
            )

    def passages_of(self, media_id: str, seq: int) -> int:
        """How many passages the chunk had when last stored (0 if never)."""
        with database.failures("reading"):
            rows = database.rows(
                self._db,
                "SELECT passages FROM chunks WHERE media_id = ? AND seq = ?",
                (media_id, seq),
            )
        return int(rows[0][0]) if rows else 0

    def store_chunk(self, transcript: Transcript, passages: int) -> Announcement | None:
        """Record a chunk whose passages are stored; returns the completion to announce, if
        this call completed the media (or takes over an unconfirmed announcement)."""
        now = time.time()
        with database.write(self._db) as db:
            row = _media(db, transcript.media_id)
            run = transcript.run or (row.run if row else NO_RUN)
            if _stale(db, transcript.media_id, run, row):
                return None
            if row is None or run > row.run:
                _reset(db, transcript.media_id, run, "transcribing", transcript.source_url)
                row = _media(db, transcript.media_id)
                assert row is not None
            _put_chunk(db, transcript, run, passages, row)
            _put_metadata(db, transcript.media_id, run, transcript.metadata)
            if transcript.final and transcript.chunk_count:
                db.execute(
                    "UPDATE media SET chunk_count = ? WHERE media_id = ?",
                    (transcript.chunk_count, transcript.media_id),
                )
            return _advance(db, transcript.media_id, now)

    def reclaim(self, media_id: str) -> Announcement | None:
        """After `AnnouncementInFlightError`: the announcement to make now; None if confirmed."""
        with database.write(self._db) as db:
            return _advance(db, media_id, time.time())

    def announced(self, announcement: Announcement) -> None:
        """`media.indexed` of this completion is acknowledged by the broker."""
        with database.write(self._db) as db:
            db.execute(
                "UPDATE media SET announced_at = ? WHERE media_id = ? AND run = ?",
                (time.time(), announcement.media_id, announcement.run),
            )

    def fail(
        self,
        media_id: str,
        run: str | None,
        failure: dict[str, str],
        source_url: str | None,
    ) -> None:
        """A terminal failure of a run (of the newest run when `run` is None). An indexed run
        stays indexed: a late failure of it (an invalid duplicate event) changes nothing."""
        with database.write(self._db) as db:
            row = _media(db, media_id)
            run = run or (row.run if row else NO_RUN)
            if _stale(db, media_id, run, row):
                return
            if row is None or run > row.run:
                _reset(db, media_id, run, "failed", source_url)
            elif row.state == "indexed":
                return
            db.execute(
                "UPDATE media SET state = 'failed', failed_stage = ?, failed_reason = ?, "
                "failed_detail = ?, updated_at = ? WHERE media_id = ?",
                (failure["stage"], failure["reason"], failure["detail"], time.time(), media_id),
            )

    def get(self, media_id: str) -> MediaRecord | None:
        with database.failures("reading"):
            return _media(self._db, media_id)

    def recent(self, limit: int = 1000) -> list[MediaRecord]:
        """The media changed most recently, newest first."""
        with database.failures("reading"):
            rows = database.rows(
                self._db, f"SELECT {_COLUMNS} FROM media ORDER BY updated_at DESC LIMIT ?", (limit,)
            )
        return [_record(row) for row in rows]

    def unfinished(self) -> list[MediaRecord]:
        """Every media whose newest run is neither indexed nor failed."""
        with database.failures("reading"):
            rows = database.rows(
                self._db,
                f"SELECT {_COLUMNS} FROM media WHERE state IN ('requested', 'transcribing') "
                "ORDER BY requested_at",
            )
        return [_record(row) for row in rows]

    def segments(self, media_id: str) -> Iterator[Segment]:
        """Every segment of the media's newest run in time order, a page of chunks at a time."""
        record = self.get(media_id)
        if record is None:
            return
        after = -1
        while True:
            with database.failures("reading"):
                rows = database.rows(
                    self._db,
                    "SELECT seq, segments FROM chunks WHERE media_id = ? AND run = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (media_id, record.run, after, PAGE_CHUNKS),
                )
            if not rows:
                return
            for seq, segments in rows:
                after = seq
                yield from _SEGMENTS.validate_json(str(segments))

    def chunk_segments(self, media_id: str, seq: int) -> list[Segment]:
        """The segments of one stored chunk (none if it is not stored)."""
        with database.failures("reading"):
            rows = database.rows(
                self._db,
                "SELECT segments FROM chunks WHERE media_id = ? AND seq = ?",
                (media_id, seq),
            )
        return _SEGMENTS.validate_json(str(rows[0][0])) if rows else []

    def close(self) -> None:
        self._db.close()


def open_ledger(settings: EmbedSettings) -> Ledger:
    """The ledger in the configured database file (`STREAMSCRIBE_SQLITE__PATH`)."""
    return Ledger(settings.database_path, settings.sqlite.busy_timeout_ms)


def _add_columns(db: apsw.Connection) -> None:
    for table, added in (("media", _ADDED_COLUMNS), ("chunks", _ADDED_CHUNK_COLUMNS)):
        present = {row[1] for row in database.rows(db, f"PRAGMA table_info({table})")}
        for name, kind in added.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _media(db: apsw.Connection, media_id: str) -> MediaRecord | None:
    rows = database.rows(db, f"SELECT {_COLUMNS} FROM media WHERE media_id = ?", (media_id,))
    return _record(rows[0]) if rows else None


def _record(row: Any) -> MediaRecord:
    (media_id, run, state, url, count, stored, passages, stage, reason, detail) = row[:10]
    failure = {"stage": stage, "reason": reason, "detail": detail or ""} if reason else None
    return MediaRecord(
        media_id=media_id,
        run=run,
        state=state,
        source_url=url,
        chunk_count=count,
        chunks_stored=stored,
        passages=passages,
        failure=failure,
        requested_at=row[10],
        updated_at=row[11],
        indexed_at=row[12],
        language=row[14],
        source=row[15],
        callback_url=row[16],
        **dict(zip(METADATA, row[17:23], strict=True)),
        speech_redecoded=float(row[23]),
        speech_uncovered=float(row[24]),
    )


def _stale(db: apsw.Connection, media_id: str, run: str, row: MediaRecord | None) -> bool:
    """Whether an event of `run` must change nothing: it is older than the media's newest run,
    or, the media being forgotten, of the forgotten run or an older one."""
    if row is not None:
        return run < row.run
    forgotten = database.rows(db, "SELECT run FROM forgotten WHERE media_id = ?", (media_id,))
    return bool(forgotten) and run <= str(forgotten[0][0])


def _reset(db: apsw.Connection, media_id: str, run: str, state: str, url: str | None) -> None:
    """Start the media over as `run`: counts from zero, no failure, not indexed, no callback.
    Chunk rows of the older run stay (a transcript stays readable) until the new run completes.
    A tombstone goes: the new row's run, newer, now decides what is admitted."""
    now = time.time()
    db.execute(
        "INSERT OR REPLACE INTO media (media_id, run, state, source_url, requested_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (media_id, run, state, url, now, now),
    )
    db.execute("DELETE FROM forgotten WHERE media_id = ?", (media_id,))


def _put_metadata(
    db: apsw.Connection, media_id: str, run: str, metadata: MediaMetadata | None
) -> None:
    """Each field the event knows replaces the run's; those it does not know stay."""
    if metadata is None:
        return
    values = metadata.model_dump(mode="json")
    db.execute(
        f"UPDATE media SET {_SET_METADATA} WHERE media_id = ? AND run = ?",
        (*(values[name] for name in METADATA), media_id, run),
    )


def _put_chunk(
    db: apsw.Connection, transcript: Transcript, run: str, passages: int, row: MediaRecord
) -> None:
    """Write the chunk row; count it once per run, whatever the redeliveries."""
    key = (transcript.media_id, transcript.seq)
    previous = database.rows(
        db,
        "SELECT run, passages, redecoded, uncovered FROM chunks WHERE media_id = ? AND seq = ?",
        key,
    )
    counted = bool(previous) and previous[0][0] == run
    before = previous[0][1:] if counted else (0, 0.0, 0.0)
    added = passages - before[0]
    redecoded = transcript.speech_redecoded_seconds - before[1]
    uncovered = transcript.speech_uncovered_seconds - before[2]
    segments = _SEGMENTS.dump_json(transcript.segments, exclude_none=True).decode()
    db.execute(
        "INSERT OR REPLACE INTO chunks (media_id, seq, run, passages, segments, redecoded, "
        "uncovered) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*key, run, passages, segments, transcript.speech_redecoded_seconds,
         transcript.speech_uncovered_seconds),
    )  # fmt: skip
    state = row.state if row.state in ("indexed", "failed") else "transcribing"
    db.execute(
        "UPDATE media SET chunks_stored = chunks_stored + ?, passages = passages + ?, "
        "speech_redecoded = speech_redecoded + ?, speech_uncovered = speech_uncovered + ?, "
        "state = ?, updated_at = ?, source_url = coalesce(source_url, ?), language = ?, "
        "source = ? WHERE media_id = ?",
        (
            0 if counted else 1, added, redecoded, uncovered, state, time.time(),
            transcript.source_url, transcript.language, transcript.source.value, key[0],
        ),
    )  # fmt: skip


def _advance(db: apsw.Connection, media_id: str, now: float) -> Announcement | None:
    """Mark the media indexed when its last chunk is in, and claim announcing it; or take over
    an announcement its claimer never confirmed (it died before the broker acked it)."""
    row = database.rows(
        db,
        "SELECT state, chunk_count, chunks_stored, announce_claimed_at, announced_at, run, "
        "source_url, passages FROM media WHERE media_id = ?",
        (media_id,),
    )[0]
    state, count, stored, claimed, announced, run, url, passages = row
    if state == "transcribing" and count is not None and stored >= count:
        db.execute(
            "UPDATE media SET state = 'indexed', indexed_at = ? WHERE media_id = ?",
            (now, media_id),
        )
        # chunks an older, longer run left beyond this run's end
        db.execute("DELETE FROM chunks WHERE media_id = ? AND run != ?", (media_id, run))
    elif state != "indexed" or announced is not None:
        return None
    elif claimed is not None and now - claimed < ANNOUNCE_LEASE_SECONDS:
        raise AnnouncementInFlightError(media_id, ANNOUNCE_LEASE_SECONDS - (now - claimed))
    db.execute("UPDATE media SET announce_claimed_at = ? WHERE media_id = ?", (now, media_id))
    return Announcement(media_id, str(run), str(url or ""), int(count), int(passages))

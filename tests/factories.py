"""Events built the same way by every test that needs one."""

from __future__ import annotations

from pathlib import Path

import apsw

from streamscribe.common.events import Segment, Transcript

RUN = "1000000000000-a"


def transcript_chunk(
    seq: int, count: int, run: str | None = RUN, media_id: str = "m1", text: str = "chunk {seq}"
) -> Transcript:
    """Chunk `seq` of a media of `count` 30-s chunks, with one segment saying `text`."""
    final = seq == count - 1
    return Transcript(
        media_id=media_id,
        seq=seq,
        start=seq * 30.0,
        end=seq * 30.0 + 30.0,
        final=final,
        chunk_count=count if final else None,
        source_url=f"https://example.org/{media_id}.mp3",
        language="en",
        run=run,
        segments=[Segment(start=seq * 30.0 + 1, end=seq * 30.0 + 2, text=text.format(seq=seq))],
    )


def first_ledger(path: Path, media_id: str) -> None:
    """A database with the ledger's first schema (no column added since) and one requested
    media in it, as an older release left it."""
    old = apsw.Connection(str(path))
    old.execute(
        "CREATE TABLE media (media_id TEXT PRIMARY KEY, run TEXT NOT NULL, state TEXT NOT NULL, "
        "source_url TEXT, chunk_count INTEGER, chunks_stored INTEGER NOT NULL DEFAULT 0, "
        "passages INTEGER NOT NULL DEFAULT 0, failed_stage TEXT, failed_reason TEXT, "
        "failed_detail TEXT, requested_at REAL NOT NULL, updated_at REAL NOT NULL, "
        "indexed_at REAL, announce_claimed_at REAL, announced_at REAL)"
    )
    old.execute(
        "INSERT INTO media (media_id, run, state, requested_at, updated_at) "
        "VALUES (?, '1', 'requested', 0, 0)",
        (media_id,),
    )
    old.close()

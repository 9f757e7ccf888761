"""Events built the same way by every test that needs one."""

from __future__ import annotations

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

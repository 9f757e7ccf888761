"""Cut a chunk's transcript into passages, the units that get embedded and searched.

Passages follow whisper's segments, which are roughly sentences, so that a search hit starts
where its sentence is spoken. Only segments too short to carry meaning on their own are merged.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamscribe.common.events import Segment, Transcript


@dataclass(frozen=True)
class Passage:
    """One searchable piece of a chunk; `id` is the chunk id plus the passage number."""

    id: str
    media_id: str
    seq: int
    index: int
    start: float
    end: float
    text: str


def passage_id(chunk_id: str, index: int) -> str:
    """The deterministic id of a chunk's `index`-th passage: a redelivery overwrites it."""
    return f"{chunk_id}:{index:03d}"


@dataclass(frozen=True)
class _Piece:
    start: float
    end: float
    text: str
    words: int


def passages_for(transcript: Transcript, min_words: int = 8, max_words: int = 60) -> list[Passage]:
    """The passages of one chunk, numbered in time order.

    A segment under `min_words` words joins the following one (the previous one at the end of
    the chunk), unless the join would exceed `max_words`; a long segment is never split.
    """
    groups = _group(_clean(transcript.segments), min_words, max_words)
    return [
        Passage(
            id=passage_id(transcript.chunk_id, index),
            media_id=transcript.media_id,
            seq=transcript.seq,
            index=index,
            start=pieces[0].start,
            end=pieces[-1].end,
            text=" ".join(piece.text for piece in pieces),
        )
        for index, pieces in enumerate(groups)
    ]


def _clean(segments: list[Segment]) -> list[_Piece]:
    """Segments with whitespace collapsed; blank ones dropped."""
    pieces = []
    for segment in segments:
        words = segment.text.split()
        if words:
            pieces.append(_Piece(segment.start, segment.end, " ".join(words), len(words)))
    return pieces


def _group(pieces: list[_Piece], min_words: int, max_words: int) -> list[list[_Piece]]:
    """Greedy left-to-right grouping: short pieces wait for the next one."""
    groups: list[list[_Piece]] = []
    pending: list[_Piece] = []
    for piece in pieces:
        candidate = [*pending, piece]
        if pending and _count(candidate) > max_words:
            # the short run cannot join this piece: it stays a passage of its own
            groups.append(pending)
            candidate = [piece]
        if _count(candidate) < min_words:
            pending = candidate
        else:
            groups.append(candidate)
            pending = []
    if pending:
        if groups and _count(groups[-1]) + _count(pending) <= max_words:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    return groups


def _count(pieces: list[_Piece]) -> int:
    return sum(piece.words for piece in pieces)

"""The index the embed stage writes and the readers query: a vector backend plus the ledger.

Writing a chunk: its passages go to the backend first (replacing those it had, deleting those an
earlier run had beyond this run's count), then the ledger records the chunk and says whether the
media is now complete. A crash in between redelivers the chunk, which writes the same again.

Forgetting a media: its passages go first, then its ledger record, so a crash in between leaves
the ledger knowing the media and a retry finishes the job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date

from streamscribe.common.events import Segment, Transcript
from streamscribe.embed.passages import Passage, passage_id
from streamscribe.embed.store.base import Hit, SearchMode, VectorBackend, Vectors
from streamscribe.embed.store.fusion import fuse
from streamscribe.embed.store.ledger import Announcement, Ledger, MediaRecord
from streamscribe.embed.store.sqlite import STOPWORDS, WORD

CANDIDATES = 50
"""Hits taken from each ranking before hybrid fusion: enough for the fused top k."""
FILTERED_CANDIDATES = 1000
"""Hits ranked before a filter keeps those of the wanted media: the deepest list every backend
answers (Pinecone's top_k with metadata). A filter narrower than that depth finds fewer."""


@dataclass(frozen=True)
class HitFilter:
    """Which media's passages a search keeps (every given condition holds)."""

    media_id: str | None = None
    author: str | None = None
    """Part of the author's name, in any case."""
    since: date | None = None
    """Published on or after; a media with no known date is left out."""
    until: date | None = None
    """Published on or before; a media with no known date is left out."""

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.media_id, self.author, self.since, self.until))

    def admits(self, record: MediaRecord | None) -> bool:
        if record is None:
            return False
        if self.media_id is not None and record.media_id != self.media_id:
            return False
        wanted = (self.author or "").casefold()
        if wanted and wanted not in (record.author or "").casefold():
            return False
        return self._dated(record.published)

    def _dated(self, published: str | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if published is None:
            return False
        day = date.fromisoformat(published)
        return (self.since or date.min) <= day <= (self.until or date.max)


class Index:
    def __init__(self, ledger: Ledger, vectors: VectorBackend) -> None:
        self.ledger = ledger
        self.vectors = vectors

    def admits(self, transcript: Transcript) -> bool:
        """False for a chunk of a run the media has moved past: it must change nothing."""
        return self.ledger.admits(transcript.media_id, transcript.run)

    def store(
        self, transcript: Transcript, passages: Sequence[Passage], vectors: Vectors
    ) -> Announcement | None:
        """Store one chunk; the completion to announce when it was the media's last."""
        before = self.ledger.passages_of(transcript.media_id, transcript.seq)
        stale = [passage_id(transcript.chunk_id, i) for i in range(len(passages), before)]
        self.vectors.upsert(passages, vectors, transcript.source_url, stale)
        announcement = self.ledger.store_chunk(transcript, len(passages))
        if announcement is None and self.ledger.get(transcript.media_id) is None:
            # the media was forgotten while this chunk was embedded: the ledger refused it,
            # and the passages just written must not outlive it
            self.vectors.delete_media(transcript.media_id)
        return announcement

    def forget(self, media_id: str) -> bool:
        """Remove the media's passages, transcript and record; False when the ledger did not
        know it (its passages are removed all the same: a retry after a crash finds none)."""
        self.vectors.delete_media(media_id)
        known = self.ledger.forget(media_id)
        # again: a chunk embedded while the ledger still admitted it may have written its
        # passages after the first sweep (one written after this one is refused by the ledger
        # and removed by `store`)
        self.vectors.delete_media(media_id)
        return known

    def search(
        self,
        query: str,
        vector: Vectors | None,
        k: int,
        mode: SearchMode,
        only: HitFilter | None = None,
    ) -> list[Hit]:
        """Vector, keyword or both fused; `vector` (the embedded query) unless `keyword`. Each
        hit starts at its first word that matches the query, when its words are known. With
        `only`, a deeper ranking is filtered against the ledger (backends know no metadata)."""
        records: dict[str, MediaRecord | None] = {}
        if only is None or not only.active:
            ranked = self._ranked(query, vector, k, mode)
        else:
            deeper = self._ranked(query, vector, max(k, FILTERED_CANDIDATES), mode)
            ranked = [hit for hit in deeper if only.admits(self._record(hit, records))][:k]
        return [self._located(hit, query, self._record(hit, records)) for hit in ranked]

    def _record(self, hit: Hit, seen: dict[str, MediaRecord | None]) -> MediaRecord | None:
        """The hit's media record, read once per search."""
        if hit.media_id not in seen:
            seen[hit.media_id] = self.ledger.get(hit.media_id)
        return seen[hit.media_id]

    def _ranked(self, query: str, vector: Vectors | None, k: int, mode: SearchMode) -> list[Hit]:
        if mode == "keyword" or vector is None:
            return self.vectors.keyword(query, k)
        if mode == "vector" or not self.vectors.keyword_search:
            return self.vectors.nearest(vector, k)
        depth = max(k, CANDIDATES)
        rankings = [self.vectors.nearest(vector, depth), self.vectors.keyword(query, depth)]
        return fuse(rankings, k)

    def _located(self, hit: Hit, query: str, record: MediaRecord | None) -> Hit:
        """The hit with its media's language, source, title, author and date, starting at its
        first matching word."""
        seq = hit.id.rsplit(":", 2)[-2:][0]  # ids are media_id:seq:passage
        segments = self.ledger.chunk_segments(hit.media_id, int(seq)) if seq.isdigit() else []
        start = first_match(segments, hit.start, hit.end, query)
        return replace(
            hit,
            start=hit.start if start is None else start,
            language=record.language if record else None,
            source=record.source if record else None,
            title=record.title if record else None,
            author=record.author if record else None,
            published=record.published if record else None,
        )

    def segments(self, media_id: str) -> Iterator[Segment]:
        return self.ledger.segments(media_id)

    def close(self) -> None:
        self.vectors.close()
        self.ledger.close()


def first_match(segments: Sequence[Segment], start: float, end: float, query: str) -> float | None:
    """The start of the first word between `start` and `end` that matches a word of `query`
    (the same word, or one the other begins with, as "budget" and "budgets"); stop words only
    when the query has nothing else."""
    wanted = [w for w in _words(query) if w not in STOPWORDS] or _words(query)
    for segment in segments:
        for word in segment.words or []:
            if word.start < start - 0.001 or word.end > end + 0.001:
                continue
            spoken = _words(word.word)
            if spoken and any(_same(spoken[0], w) for w in wanted):
                return word.start
    return None


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _same(spoken: str, wanted: str) -> bool:
    shorter, longer = sorted((spoken, wanted), key=len)
    return spoken == wanted or (len(shorter) >= 4 and longer.startswith(shorter))

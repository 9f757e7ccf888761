"""The index the embed stage writes and the readers query: a vector backend plus the ledger.

Writing a chunk: its passages go to the backend first (replacing those it had, deleting those an
earlier run had beyond this run's count), then the ledger records the chunk and says whether the
media is now complete. A crash in between redelivers the chunk, which writes the same again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from streamscribe.common.events import Segment, Transcript
from streamscribe.embed.passages import Passage, passage_id
from streamscribe.embed.store.base import Hit, SearchMode, VectorBackend, Vectors
from streamscribe.embed.store.fusion import fuse
from streamscribe.embed.store.ledger import Announcement, Ledger

CANDIDATES = 50
"""Hits taken from each ranking before hybrid fusion: enough for the fused top k."""


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
        return self.ledger.store_chunk(transcript, len(passages))

    def search(self, query: str, vector: Vectors | None, k: int, mode: SearchMode) -> list[Hit]:
        """Vector, keyword or both fused; `vector` (the embedded query) unless `keyword`."""
        if mode == "keyword" or vector is None:
            return self.vectors.keyword(query, k)
        if mode == "vector" or not self.vectors.keyword_search:
            return self.vectors.nearest(vector, k)
        depth = max(k, CANDIDATES)
        rankings = [self.vectors.nearest(vector, depth), self.vectors.keyword(query, depth)]
        return fuse(rankings, k)

    def segments(self, media_id: str) -> Iterator[Segment]:
        return self.ledger.segments(media_id)

    def close(self) -> None:
        self.vectors.close()
        self.ledger.close()

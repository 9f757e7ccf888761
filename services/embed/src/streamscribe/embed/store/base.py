"""The contract of a vector backend and the values it trades in. Imports no backend.

A backend holds passages with their vectors (and, where it can, their words for keyword search).
It does not decide when a media is complete: the ledger (`ledger.py`) does, because a backend
may be eventually consistent (Pinecone) and completion must be read from what was written.
Every backend failure that may pass (I/O, network, 429, 5xx) surfaces as `TransientError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamscribe.common.vocabulary import SearchMode as SearchMode
from streamscribe.embed.passages import Passage

Vectors = npt.NDArray[np.floating[Any]]
"""Rows of float vectors, one per passage (or a single query vector)."""


@dataclass(frozen=True)
class Hit:
    """One search result, best first. `score`: cosine similarity for vector search, BM25 (higher
    is better) for keyword search, the reciprocal-rank-fusion score for hybrid search."""

    id: str
    media_id: str
    source_url: str
    start: float
    end: float
    text: str
    score: float
    language: str | None = None
    """The media's transcript language (from the ledger)."""
    source: str | None = None
    """`asr` or `captions` (from the ledger)."""
    title: str | None = None
    """The media's title, author and publication date (ISO), where known (from the ledger)."""
    author: str | None = None
    published: str | None = None


class VectorBackend(Protocol):
    """Passages and their vectors; one module per implementation (`sqlite.py`, `pinecone.py`)."""

    keyword_search: bool
    """Whether `keyword` searches words (FTS); a backend without it returns no keyword hits."""

    def upsert(
        self,
        passages: Sequence[Passage],
        vectors: Vectors,
        source_url: str,
        stale_ids: Sequence[str],
    ) -> None:
        """Write the passages of one chunk under their deterministic ids, replacing any with the
        same id, and delete `stale_ids` (passages an earlier run of the chunk had and this run
        has not), so a re-indexed chunk leaves nothing stale. `vectors` has one L2-normalised
        row per passage. Idempotent: a redelivered chunk writes the same rows again."""
        ...

    def nearest(self, vector: Vectors, k: int) -> list[Hit]:
        """The `k` passages nearest to a normalised query vector by cosine, best first."""
        ...

    def keyword(self, query: str, k: int) -> list[Hit]:
        """The `k` passages that best match the words of `query`, best first."""
        ...

    def delete_media(self, media_id: str) -> None:
        """Delete every passage of the media (vectors and words). Idempotent: deleting a media
        the backend does not hold does nothing."""
        ...

    def count(self) -> int:
        """How many passages are stored (as the backend sees it now)."""
        ...

    def close(self) -> None: ...


def check_vectors(passages: Sequence[Passage], vectors: Vectors) -> npt.NDArray[np.float32]:
    """The vectors as float32 rows, checked against the passages of one chunk."""
    if len({(p.media_id, p.seq) for p in passages}) > 1:
        raise ValueError("passages of one upsert must belong to one chunk")
    if not passages:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(passages) or matrix.shape[1] == 0:
        raise ValueError(f"expected {len(passages)} vector rows, got shape {matrix.shape}")
    return matrix

"""What the embed service and the CLI need from a vector store, so that a backend is one module.

LanceDB (embedded default) and Pinecone (production) each implement `VectorStore`. Every
backend failure that may pass (I/O, network, service unavailable) surfaces as TransientError.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamscribe.common.events import Segment, Transcript
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import EmbedSettings

Vectors = npt.NDArray[np.floating[Any]]
"""Rows of float vectors, one per passage (or a single query vector)."""


@dataclass(frozen=True)
class Hit:
    """One search result; `score` is the cosine similarity, higher is better."""

    media_id: str
    source_url: str
    start: float
    end: float
    text: str
    score: float


@dataclass(frozen=True)
class Progress:
    """How much of one media is stored.

    `stored` counts distinct chunks; `total` is the media's chunk count, known once its final
    chunk is stored (chunks may arrive in any order).
    """

    stored: int
    total: int | None
    passages: int
    source_url: str | None

    @property
    def complete(self) -> bool:
        return self.total is not None and self.stored >= self.total


class VectorStore(Protocol):
    """Passages with their vectors, plus each chunk's segments for transcript export."""

    def upsert(
        self,
        transcript: Transcript,
        passages: Sequence[Passage],
        vectors: Vectors,
    ) -> None:
        """Store one chunk idempotently: its passages replace whatever that chunk had before.

        `vectors` holds one L2-normalised row per passage.
        """
        ...

    def progress(self, media_id: str) -> Progress: ...

    def search(self, vector: Vectors, k: int) -> list[Hit]:
        """The `k` passages nearest to a normalised query vector, best first."""
        ...

    def segments(self, media_id: str) -> Iterator[Segment]:
        """Every segment of the media in time order, streamed a page of chunks at a time."""
        ...

    def media_ids(self) -> list[str]: ...

    def close(self) -> None: ...


def open_store(settings: EmbedSettings) -> VectorStore:
    """The backend the settings name (imported here: a backend is one module)."""
    from streamscribe.embed.lancedb_store import LanceDBStore

    return LanceDBStore(settings.store_path, settings.embed.store_cache_bytes)

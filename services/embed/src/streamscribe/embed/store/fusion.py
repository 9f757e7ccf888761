"""Hybrid search: vector and keyword results fused by reciprocal rank.

RRF (Cormack et al., 2009) scores a passage by sum(1 / (K + rank)) over the lists it is in. It
needs no calibration between a cosine and a BM25 score, which live on unrelated scales, and a
passage that one list ranks first still surfaces when the other misses it: an exact name or
number the embedding model blurs is found by its words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from streamscribe.embed.store.base import Hit

K = 60
"""The constant of the original paper: damps the weight of the very first ranks."""


def fuse(rankings: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The best `k` passages over every ranking, each hit scored by reciprocal rank."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (K + rank)
            first.setdefault(hit.id, hit)
    best = sorted(scores, key=lambda id_: (-scores[id_], id_))[:k]
    return [replace(first[id_], score=scores[id_]) for id_ in best]

"""Hybrid search with the real embedding model: a passage found by a rare word (an order number)
that the embedding model blurs among look-alike passages."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import EmbedSection
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Ledger
from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.conftest import SHARED_ONNX_DIR
from tests.integration.speech import SENTENCES

pytestmark = pytest.mark.integration

PLACES = ["bridge", "station", "harbour", "market", "school", "airport", "bakery", "museum"]
LETTERS = "ABCDEFGHJKLMNPRSTVWXYZ"
TARGET = "The delivery van for order KX-7731 stopped near the bridge, so the parcels arrived late."
QUERY = "order 7731"


def look_alikes(count: int) -> list[str]:
    rng = random.Random(5)
    return [
        f"The delivery van for order {rng.choice(LETTERS)}{rng.choice(LETTERS)}-"
        f"{rng.randrange(1000, 9999)} stopped near the {rng.choice(PLACES)}, so the parcels "
        f"arrived {rng.choice(['late', 'early', 'on time', 'damaged'])}."
        for _ in range(count)
    ]


def test_hybrid_finds_a_rare_word_that_vector_search_ranks_below_10(tmp_path: Path) -> None:
    embedder = load_embedder(EmbedSection(onnx_dir=SHARED_ONNX_DIR), tmp_path)
    texts = [*SENTENCES, *look_alikes(150), TARGET]
    vectors = embedder.embed(texts)
    path = tmp_path / "streamscribe.db"
    index = Index(Ledger(path), SQLiteVectors(path))
    for seq, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        passage = Passage(f"talk:{seq:06d}:000", "talk", seq, 0, seq * 5.0, seq * 5.0 + 5, text)
        index.vectors.upsert([passage], vector[None, :], "https://example.org/talk", [])
    target = f"talk:{len(texts) - 1:06d}:000"
    query = embedder.embed([QUERY])[0]

    by_vector = [hit.id for hit in index.search(QUERY, query, 10, "vector")]
    by_words = [hit.id for hit in index.search(QUERY, None, 10, "keyword")]
    hybrid = index.search(QUERY, query, 5, "hybrid")

    assert target not in by_vector  # the premise: the model alone ranks it below 10
    assert by_words[0] == target
    assert target in [hit.id for hit in hybrid]
    found = next(hit for hit in hybrid if hit.id == target)
    assert (found.media_id, found.start, found.source_url) == (
        "talk",
        (len(texts) - 1) * 5.0,
        "https://example.org/talk",
    )
    index.close()

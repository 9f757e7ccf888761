"""LanceDBStore: idempotent upserts, progress, cosine search, ordered segments, a second reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from lancedb.table import LanceTable

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.common.events import Segment, Transcript
from streamscribe.embed import lancedb_store
from streamscribe.embed.lancedb_store import LanceDBStore
from streamscribe.embed.passages import Passage, passages_for

DIM = 384
URL = "https://example.com/talk.mp3"
SENTENCE = "this sentence has more than eight words in it, on purpose"


def chunk(
    seq: int,
    sentences: int = 2,
    media_id: str = "m-talk",
    chunk_count: int | None = None,
) -> Transcript:
    """Chunk `seq` covers [30*seq, 30*seq + 30) with `sentences` passage-sized segments."""
    start = 30.0 * seq
    segments = [
        Segment(start=start + 5 * i, end=start + 5 * i + 5, text=f"{SENTENCE} {seq}.{i}")
        for i in range(sentences)
    ]
    return Transcript(
        media_id=media_id,
        seq=seq,
        start=start,
        end=start + 30,
        final=chunk_count is not None,
        chunk_count=chunk_count,
        source_url=f"{URL}?{media_id}",
        language="en",
        segments=segments,
    )


def unit_rows(n: int, seed: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


def put(store: LanceDBStore, transcript: Transcript, seed: int = 0) -> list[Passage]:
    passages = passages_for(transcript)
    store.upsert(transcript, passages, unit_rows(len(passages), seed))
    return passages


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LanceDBStore]:
    opened = LanceDBStore(tmp_path / "index")
    yield opened
    opened.close()


def test_an_empty_store_answers_every_read(store: LanceDBStore) -> None:
    assert store.progress("m-talk").stored == 0
    assert store.search(unit_rows(1, 0)[0], 5) == []
    assert list(store.segments("m-talk")) == []
    assert store.media_ids() == []


def test_redelivery_overwrites_instead_of_duplicating(store: LanceDBStore) -> None:
    put(store, chunk(0, sentences=3), seed=1)
    put(store, chunk(0, sentences=3), seed=2)

    progress = store.progress("m-talk")
    assert (progress.stored, progress.passages) == (1, 3)


def test_reupsert_with_fewer_passages_removes_the_stale_ones(store: LanceDBStore) -> None:
    put(store, chunk(0, sentences=4))
    put(store, chunk(1, sentences=2))

    put(store, chunk(0, sentences=1))
    assert store.progress("m-talk").passages == 1 + 2

    store.upsert(chunk(0, sentences=0), [], np.zeros((0, DIM), dtype=np.float32))
    assert store.progress("m-talk").passages == 2


def test_progress_knows_the_total_once_the_final_chunk_is_stored(store: LanceDBStore) -> None:
    put(store, chunk(0))
    before = store.progress("m-talk")
    assert (before.stored, before.total, before.complete) == (1, None, False)
    assert before.source_url == f"{URL}?m-talk"

    put(store, chunk(1, chunk_count=2))
    after = store.progress("m-talk")
    assert (after.stored, after.total, after.passages, after.complete) == (2, 2, 4, True)


def test_chunks_arriving_out_of_order_complete_the_media(store: LanceDBStore) -> None:
    put(store, chunk(2, chunk_count=3))
    put(store, chunk(0))
    assert store.progress("m-talk").complete is False

    put(store, chunk(1))
    put(store, chunk(1))  # a redelivery does not count twice
    progress = store.progress("m-talk")
    assert (progress.stored, progress.total, progress.complete) == (3, 3, True)


def test_search_returns_the_nearest_passage_first(store: LanceDBStore) -> None:
    transcript = chunk(4, sentences=5)
    passages = passages_for(transcript)
    vectors = unit_rows(len(passages), seed=7)
    store.upsert(transcript, passages, vectors)
    put(store, chunk(0, media_id="m-other"), seed=8)

    hits = store.search(vectors[3], k=3)

    assert len(hits) == 3
    assert hits[0].text == passages[3].text
    assert (hits[0].media_id, hits[0].start, hits[0].end) == ("m-talk", 135.0, 140.0)
    assert hits[0].source_url == f"{URL}?m-talk"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score > hits[1].score >= hits[2].score


def test_segments_stream_in_time_order_across_chunks(
    store: LanceDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lancedb_store, "PAGE_CHUNKS", 2)  # several pages with five chunks
    for seq in (3, 0, 4, 1, 2):
        put(store, chunk(seq, chunk_count=5 if seq == 4 else None))
    put(store, chunk(0, media_id="m-other"))

    starts = [segment.start for segment in store.segments("m-talk")]

    assert starts == [30.0 * seq + 5 * i for seq in range(5) for i in range(2)]


def test_another_instance_sees_writes_made_after_it_opened(tmp_path: Path) -> None:
    writer = LanceDBStore(tmp_path / "index")
    reader = LanceDBStore(tmp_path / "index")
    assert reader.progress("m-talk").stored == 0  # opened before any table exists

    put(writer, chunk(0))
    assert reader.progress("m-talk").stored == 1
    assert len(reader.search(unit_rows(1, 0)[0], 10)) == 2

    put(writer, chunk(1, chunk_count=2))
    assert reader.progress("m-talk").complete
    assert len(list(reader.segments("m-talk"))) == 4
    writer.close()
    reader.close()


def test_media_ids_lists_every_media_once(store: LanceDBStore) -> None:
    put(store, chunk(0, media_id="m-b"))
    put(store, chunk(1, media_id="m-b"))
    put(store, chunk(0, media_id="m-a"))

    assert store.media_ids() == ["m-a", "m-b"]


def test_the_vector_size_is_taken_from_the_data(store: LanceDBStore) -> None:
    transcript = chunk(0)
    passages = passages_for(transcript)
    store.upsert(transcript, passages, unit_rows(2, 0, dim=8))
    assert store.search(unit_rows(1, 0, dim=8)[0], 1)[0].score == pytest.approx(1.0, abs=1e-5)

    with pytest.raises(ConfigError, match="8"):
        store.upsert(transcript, passages, unit_rows(2, 0, dim=16))


def test_vectors_must_match_the_passages(store: LanceDBStore) -> None:
    transcript = chunk(0)
    with pytest.raises(ValueError, match="2 vector rows"):
        store.upsert(transcript, passages_for(transcript), unit_rows(3, 0))


def test_store_failures_are_transient(store: LanceDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    put(store, chunk(0))

    def unplugged(*args: object, **kwargs: object) -> None:
        raise OSError("disk unplugged")

    monkeypatch.setattr(LanceTable, "merge_insert", unplugged)
    monkeypatch.setattr(LanceTable, "count_rows", unplugged)
    with pytest.raises(TransientError, match="chunk m-talk:000001 failed: disk unplugged"):
        put(store, chunk(1))
    with pytest.raises(TransientError, match="progress of m-talk"):
        store.progress("m-talk")


def test_lancedb_caches_stay_within_the_configured_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lancedb's defaults (6 GB index, 1 GB metadata) keep every version written cached
    sessions = []
    real_session = lancedb_store.lancedb.Session

    def recording_session(**sizes: int) -> object:
        sessions.append(real_session(**sizes))
        return sessions[-1]

    monkeypatch.setattr(lancedb_store.lancedb, "Session", recording_session)
    bounded = LanceDBStore(tmp_path / "bounded", cache_bytes=256 * 1024)
    default = LanceDBStore(tmp_path / "default", cache_bytes=2**30)
    for seq in range(30):
        for store in (bounded, default):
            put(store, chunk(seq))
            store.progress("m-talk")

    bounded_bytes, default_bytes = (session.size_bytes for session in sessions)
    assert default_bytes > 2 * 256 * 1024  # what the bound is there to stop
    assert bounded_bytes <= 2 * 256 * 1024  # two caches of 256 KiB each

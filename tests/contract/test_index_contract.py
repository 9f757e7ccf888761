"""One contract, every vector backend: the index (ledger + backend) behaves the same on SQLite, on
Pinecone (a stand-in on loopback speaking its wire format; the real service with
`make test-pinecone`) and on PostgreSQL (a real server with pgvector, started once a session)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from streamscribe.common.events import Transcript
from streamscribe.embed.passages import Passage, passage_id
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Ledger
from tests.contract.backends import BACKENDS, SERVED, Backend, Flaw
from tests.factories import transcript_chunk

DIM = 384
LATER_RUN = "1000000000900-c"
"""A submission after the factories' run: a later run of the same media."""


def unit_vectors(count: int, seed: int) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def chunk(seq: int, count: int, media_id: str = "media-1") -> Transcript:
    return transcript_chunk(seq, count, media_id=media_id, text="words of {seq}")


def passages(transcript: Transcript, count: int) -> list[Passage]:
    step = 30.0 / max(count, 1)
    return [
        Passage(
            id=passage_id(transcript.chunk_id, i),
            media_id=transcript.media_id,
            seq=transcript.seq,
            index=i,
            start=transcript.start + i * step,
            end=transcript.start + (i + 1) * step,
            text=f"passage {i} of chunk {transcript.seq} about topic{transcript.seq}x{i}",
        )
        for i in range(count)
    ]


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Pinecone is eventually consistent: reads may lag writes by seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout:.0f}s")
        time.sleep(0.2)


@pytest.fixture(params=sorted([*BACKENDS, *SERVED]))
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param in SERVED:
        return SERVED[request.param](request.getfixturevalue(f"{request.param}_server"))
    return BACKENDS[request.param]


@pytest.fixture
def open_index(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., Index]]:
    opened: list[AbstractContextManager[Index]] = []

    def make(flaw: Flaw | None = None) -> Index:
        context = backend(tmp_path / f"index-{len(opened)}", DIM, flaw)
        opened.append(context)
        return context.__enter__()

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)


def test_a_redelivered_chunk_is_stored_once(open_index: Callable[..., Index]) -> None:
    index = open_index()
    transcript = chunk(0, 1)
    rows, vectors = passages(transcript, 5), unit_vectors(5, 1)
    first = index.store(transcript, rows, vectors)
    assert first is not None
    index.ledger.announced(first)
    assert index.store(transcript, rows, vectors) is None
    eventually(lambda: index.vectors.count() == 5)
    hits = index.search("", vectors[3], 5, "vector")
    assert hits[0].id == rows[3].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert len({hit.id for hit in hits}) == len(hits) == 5


def test_a_reindexed_chunk_leaves_no_stale_passages(open_index: Callable[..., Index]) -> None:
    index = open_index()
    transcript = chunk(0, 1)
    done = index.store(transcript, passages(transcript, 6), unit_vectors(6, 2))
    assert done is not None
    index.ledger.announced(done)
    eventually(lambda: index.vectors.count() == 6)
    fewer = passages(transcript, 2)
    index.store(transcript, fewer, unit_vectors(2, 3))
    eventually(lambda: index.vectors.count() == 2)
    hits = index.search("", unit_vectors(1, 4)[0], 10, "vector")
    assert sorted(hit.id for hit in hits) == [p.id for p in fewer]


def test_a_2500_passage_media_is_stored_in_valid_batches(open_index: Callable[..., Index]) -> None:
    index = open_index()
    announcements = []
    sizes = (2000, 500)
    for seq, size in enumerate(sizes):
        transcript = chunk(seq, len(sizes))
        rows, vectors = passages(transcript, size), unit_vectors(size, 10 + seq)
        announcements.append(index.store(transcript, rows, vectors))
    assert announcements[0] is None
    assert announcements[1] is not None
    assert announcements[1].passages == 2500
    eventually(lambda: index.vectors.count() == 2500, timeout=60)
    probe = unit_vectors(500, 11)[123]
    assert index.search("", probe, 1, "vector")[0].id == passage_id(chunk(1, 2).chunk_id, 123)


def test_transient_failures_are_retried_until_they_pass(open_index: Callable[..., Index]) -> None:
    index = open_index(Flaw.TRANSIENT)  # Pinecone: 429 twice; SQLite: another writer's lock
    transcript = chunk(0, 1)
    rows = passages(transcript, 3)
    assert index.store(transcript, rows, unit_vectors(3, 5)) is not None
    eventually(lambda: index.vectors.count() == 3)


def test_delayed_visibility_still_completes_exactly_once(
    open_index: Callable[..., Index],
) -> None:
    index = open_index(Flaw.DELAYED)  # writes become visible seconds later (SQLite: at once)
    count = 6
    results = []
    for seq in range(count):
        transcript = chunk(seq, count)
        results.append(index.store(transcript, passages(transcript, 4), unit_vectors(4, seq)))
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert results[-1] is done[0]
    assert (done[0].chunk_count, done[0].passages) == (count, 4 * count)
    eventually(lambda: index.vectors.count() == 4 * count)


def test_two_writers_completing_the_same_media_announce_it_once(
    open_index: Callable[..., Index],
) -> None:
    index = open_index()
    second = Index(Ledger(index.ledger.path), index.vectors)
    count = 8
    results: list[object] = []

    def write(order: list[int]) -> None:
        for seq in order:
            transcript = chunk(seq, count)
            try:
                results.append(
                    (index if order[0] == 0 else second).store(
                        transcript, passages(transcript, 2), unit_vectors(2, seq)
                    )
                )
            except Exception as exc:  # AnnouncementInFlightError: the other one just did it
                results.append(type(exc).__name__)

    threads = [
        threading.Thread(target=write, args=(list(range(count)),)),
        threading.Thread(target=write, args=(list(reversed(range(count))),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    announced = [r for r in results if r is not None and not isinstance(r, str)]
    assert len(announced) == 1
    assert set(r for r in results if isinstance(r, str)) <= {"AnnouncementInFlightError"}
    second.ledger.close()


def test_transcript_export_is_in_time_order(open_index: Callable[..., Index]) -> None:
    index = open_index()
    count = 5
    for seq in (3, 1, 4, 0, 2):
        transcript = chunk(seq, count)
        index.store(transcript, passages(transcript, 1), unit_vectors(1, seq))
    assert [s.text for s in index.segments("media-1")] == [f"words of {i}" for i in range(count)]


def test_search_hits_carry_media_source_and_times(open_index: Callable[..., Index]) -> None:
    index = open_index()
    transcript = chunk(0, 1, media_id="talk-7")
    rows, vectors = passages(transcript, 4), unit_vectors(4, 9)
    index.store(transcript, rows, vectors)
    eventually(lambda: bool(index.search("topic0x2", vectors[2], 1, "hybrid")))
    hit = index.search("topic0x2", vectors[2], 1, "hybrid")[0]
    assert (hit.id, hit.media_id, hit.source_url) == (rows[2].id, "talk-7", transcript.source_url)
    assert (hit.start, hit.end) == pytest.approx((rows[2].start, rows[2].end))
    assert hit.text == rows[2].text


def test_a_forgotten_media_is_gone_until_it_is_indexed_again(
    open_index: Callable[..., Index],
) -> None:
    index = open_index()
    vectors = {"talk-a": unit_vectors(3, 40), "talk-b": unit_vectors(3, 41)}
    for media_id, rows in vectors.items():
        transcript = chunk(0, 1, media_id=media_id)
        assert index.store(transcript, passages(transcript, 3), rows) is not None
    eventually(lambda: index.vectors.count() == 6)

    assert index.forget("talk-a")
    eventually(lambda: index.vectors.count() == 3)
    both = "topic0x1"  # the words of passage 1 of chunk 0 of either media
    assert media_found(index, both, vectors["talk-a"][1]) == {"talk-b"}
    assert index.ledger.get("talk-a") is None
    assert list(index.segments("talk-a")) == []
    assert [s.text for s in index.segments("talk-b")] == ["words of 0"]
    assert not index.forget("talk-a")

    late = chunk(0, 1, media_id="talk-a")  # of the forgotten run, still in flight
    assert not index.admits(late)
    index.store(late, passages(late, 3), vectors["talk-a"])  # it was embedded meanwhile
    eventually(lambda: index.vectors.count() == 3)
    assert index.ledger.get("talk-a") is None

    again = transcript_chunk(0, 1, run=LATER_RUN, media_id="talk-a", text="said again")
    assert index.admits(again)
    assert index.store(again, passages(again, 3), vectors["talk-a"]) is not None
    eventually(lambda: index.vectors.count() == 6)
    assert media_found(index, both, vectors["talk-a"][1]) == {"talk-a", "talk-b"}
    assert [s.text for s in index.segments("talk-a")] == ["said again"]


def media_found(index: Index, words: str, vector: npt.NDArray[np.float32]) -> set[str]:
    """The media of the hits of a vector search and, where the backend has words, a keyword
    search, each checked against the other."""
    by_vector = {hit.media_id for hit in index.search(words, vector, 10, "vector")}
    by_words = {hit.media_id for hit in index.search(words, None, 10, "keyword")}
    assert by_words == (by_vector if index.vectors.keyword_search else set())
    return by_vector

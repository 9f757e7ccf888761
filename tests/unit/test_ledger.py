"""The media ledger on a real SQLite file: runs, completion once, failures, two processes."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from streamscribe.common.events import MediaMetadata
from streamscribe.embed.store import database
from streamscribe.embed.store import ledger as ledger_module
from streamscribe.embed.store.ledger import AnnouncementInFlightError, Ledger
from tests.factories import first_ledger
from tests.factories import transcript_chunk as chunk

FAILURE = {"stage": "ingest", "reason": "not_found", "detail": "HTTP Error 404"}


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


def test_completion_is_announced_once_whatever_the_order_and_redeliveries(ledger: Ledger) -> None:
    announcements = []
    for seq in (2, 0, 0, 1):  # the final chunk first, one chunk twice
        announcements.append(ledger.store_chunk(chunk(seq, 3), passages=2))
    assert announcements[:3] == [None, None, None]
    done = announcements[3]
    assert done is not None
    assert (done.media_id, done.chunk_count, done.passages) == ("m1", 3, 6)
    ledger.announced(done)
    assert ledger.store_chunk(chunk(1, 3), passages=2) is None  # a redelivery after the fact
    record = ledger.get("m1")
    assert record is not None
    assert (record.state, record.chunks_stored, record.passages) == ("indexed", 3, 6)


def test_an_unconfirmed_claim_is_taken_over_after_its_lease(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.store_chunk(chunk(0, 2), passages=1)
    assert ledger.store_chunk(chunk(1, 2), passages=1) is not None  # claimed, never confirmed
    with pytest.raises(AnnouncementInFlightError) as pending:
        ledger.store_chunk(chunk(1, 2), passages=1)  # redelivered while the claim is fresh
    assert 0 < pending.value.wait <= ledger_module.ANNOUNCE_LEASE_SECONDS
    monkeypatch.setattr(ledger_module, "ANNOUNCE_LEASE_SECONDS", 0.0)
    again = ledger.reclaim("m1")
    assert again is not None  # the first claimer died: announce (at least once)
    ledger.announced(again)
    assert ledger.reclaim("m1") is None


def test_a_newer_run_starts_over_and_an_older_one_changes_nothing(ledger: Ledger) -> None:
    first, second = "1000000000000-a", "1000000000500-b"
    for seq in range(3):
        ledger.store_chunk(chunk(seq, 3, first), passages=1)
    ledger.request("m1", second, "https://example.org/a.mp3")
    record = ledger.get("m1")
    assert record is not None
    assert (record.state, record.run, record.chunks_stored) == ("requested", second, 0)
    assert not ledger.admits("m1", first)
    assert ledger.store_chunk(chunk(2, 3, first), passages=1) is None  # late, old run
    assert ledger.store_chunk(chunk(0, 2, second), passages=4) is None
    done = ledger.store_chunk(chunk(1, 2, second), passages=4)
    assert done is not None
    assert (done.run, done.chunk_count, done.passages) == (second, 2, 8)
    # the old run's third chunk is gone from the transcript of the new run
    assert [s.text for s in ledger.segments("m1")] == ["chunk 0", "chunk 1"]


def test_an_older_request_seen_late_is_ignored(ledger: Ledger) -> None:
    ledger.request("m1", "1000000000500-b", "u")
    ledger.request("m1", "1000000000000-a", "u")
    record = ledger.get("m1")
    assert record is not None
    assert record.run == "1000000000500-b"


def test_a_failure_ends_its_run_but_not_a_newer_one(ledger: Ledger) -> None:
    ledger.request("m1", "1000000000000-a", "u")
    ledger.fail("m1", "1000000000000-a", FAILURE, "u")
    record = ledger.get("m1")
    assert record is not None
    assert (record.state, record.failure) == ("failed", FAILURE)
    ledger.request("m1", "1000000000500-b", "u")
    ledger.fail("m1", "1000000000000-a", FAILURE, "u")  # a late failure of the old run
    record = ledger.get("m1")
    assert record is not None
    assert (record.state, record.failure) == ("requested", None)


def test_a_failure_of_an_unknown_media_is_recorded(ledger: Ledger) -> None:
    ledger.fail("nobody-asked", None, FAILURE, None)
    record = ledger.get("nobody-asked")
    assert record is not None
    assert record.state == "failed"
    assert record.as_dict()["failure"]["reason"] == "not_found"


def test_an_indexed_run_stays_indexed_after_a_late_failure_of_it(ledger: Ledger) -> None:
    ledger.store_chunk(chunk(0, 1), passages=1)
    ledger.fail("m1", None, FAILURE, None)
    record = ledger.get("m1")
    assert record is not None
    assert record.state == "indexed"


def test_events_without_a_run_belong_to_the_current_one(ledger: Ledger) -> None:
    ledger.request("m1", "1000000000000-a", "u")
    assert ledger.store_chunk(chunk(0, 1, run=None), passages=1) is not None
    record = ledger.get("m1")
    assert record is not None
    assert (record.run, record.state) == ("1000000000000-a", "indexed")


def test_segments_stream_in_time_order_across_pages(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "PAGE_CHUNKS", 3)
    for seq in reversed(range(10)):
        ledger.store_chunk(chunk(seq, 10), passages=1)
    assert [s.text for s in ledger.segments("m1")] == [f"chunk {i}" for i in range(10)]


def test_recent_lists_newest_first(ledger: Ledger) -> None:
    for name in ("a", "b", "c"):
        ledger.request(name, "1000000000000-a", "u")
        time.sleep(0.01)
    assert [r.media_id for r in ledger.recent(limit=2)] == ["c", "b"]


def _store_all(path: str, media: int, chunks: int, results: multiprocessing.Queue[int]) -> None:
    ledger = Ledger(Path(path), busy_timeout_ms=60_000)
    announced = 0
    for m in range(media):
        for seq in range(chunks):
            try:
                done = ledger.store_chunk(chunk(seq, chunks, media_id=f"m{m}"), passages=1)
            except AnnouncementInFlightError:
                continue  # the other process completed this media a moment ago
            if done is not None:
                announced += 1
                ledger.announced(done)
    results.put(announced)


def test_two_processes_storing_the_same_chunks_complete_each_media_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Ledger(Path(path)).close()
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=_store_all, args=(path, 20, 10, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    counts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(counts) == 20  # each media announced by exactly one of the two
    ledger = Ledger(Path(path))
    records = [ledger.get(f"m{m}") for m in range(20)]
    assert all(r is not None and (r.state, r.chunks_stored) == ("indexed", 10) for r in records)


class BusyAtFirst:
    """A connection whose journal-mode switch is refused `busy` times, as a new file's is
    while another process switches it: SQLite does not wait for that with its busy timeout."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.switched = False

    def execute(self, sql: str) -> Iterator[tuple[str]]:
        if self.busy:
            self.busy -= 1
            raise apsw.BusyError("database is locked")
        self.switched |= sql == "PRAGMA journal_mode=WAL"
        return iter([("delete",)])


def test_a_new_database_switched_to_wal_by_another_process_is_waited_for() -> None:
    connection = BusyAtFirst(busy=3)
    database._wal(connection, busy_timeout_ms=5_000)  # type: ignore[arg-type]
    assert connection.switched


def test_a_database_locked_past_the_busy_timeout_is_an_error() -> None:
    with pytest.raises(apsw.BusyError):
        database._wal(BusyAtFirst(busy=10_000), busy_timeout_ms=200)  # type: ignore[arg-type]


OLD, NEW = "1000000000000-a", "1000000000500-b"


def test_forgetting_an_unknown_media_says_so(ledger: Ledger) -> None:
    assert not ledger.forget("nobody")
    ledger.store_chunk(chunk(0, 1), passages=1)
    assert ledger.forget("m1")
    assert not ledger.forget("m1")  # twice: the second finds nothing


def test_late_events_of_a_forgotten_run_change_nothing(ledger: Ledger) -> None:
    ledger.request("m1", OLD, "u")
    ledger.store_chunk(chunk(0, 3, OLD), passages=2)
    assert ledger.forget("m1")
    assert ledger.get("m1") is None
    assert list(ledger.segments("m1")) == []
    assert ledger.chunk_segments("m1", 0) == []
    # still in flight in Kafka when the media was forgotten
    assert not ledger.admits("m1", OLD)
    assert not ledger.admits("m1", None)
    assert ledger.store_chunk(chunk(1, 3, OLD), passages=2) is None
    ledger.request("m1", OLD, "u")  # a redelivered request of the forgotten run
    ledger.fail("m1", OLD, FAILURE, "u")
    ledger.fail("m1", None, FAILURE, "u")
    assert ledger.get("m1") is None
    assert ledger.recent() == []


def test_a_new_run_after_a_forget_indexes_the_media_anew(ledger: Ledger) -> None:
    for seq in range(2):
        ledger.store_chunk(chunk(seq, 2, OLD), passages=3)
    assert ledger.forget("m1")
    assert ledger.admits("m1", NEW)
    ledger.request("m1", NEW, "https://example.org/again.mp3")
    record = ledger.get("m1")
    assert record is not None
    assert (record.run, record.state, record.chunks_stored) == (NEW, "requested", 0)
    assert ledger.store_chunk(chunk(0, 1, OLD), passages=1) is None  # the old run, still late
    done = ledger.store_chunk(chunk(0, 1, NEW, text="again"), passages=1)
    assert done is not None
    assert (done.run, done.chunk_count, done.passages) == (NEW, 1, 1)
    assert [s.text for s in ledger.segments("m1")] == ["again"]


def test_a_new_run_seen_first_through_its_chunks_is_admitted_after_a_forget(
    ledger: Ledger,
) -> None:
    ledger.store_chunk(chunk(0, 1, OLD), passages=1)
    ledger.forget("m1")
    assert ledger.store_chunk(chunk(0, 1, NEW), passages=1) is not None
    ledger.forget("m1")  # forgotten again: now NEW is the run refused
    assert not ledger.admits("m1", NEW)
    assert ledger.admits("m1", "1000000000900-c")


def test_a_callback_is_handed_out_once_per_run(ledger: Ledger) -> None:
    hook = "https://hooks.example.org/done?token=s3cret"
    ledger.request("m1", OLD, "u", callback_url=hook)
    record = ledger.get("m1")
    assert record is not None
    assert record.callback_url == hook
    public = record.as_dict()
    assert public["callback"] is True
    assert "s3cret" not in str(public)
    assert ledger.claim_callback("m1", OLD) == hook
    assert ledger.claim_callback("m1", OLD) is None  # a redelivered outcome: not sent twice
    ledger.callback_failed("m1", OLD)
    assert ledger.claim_callback("m1", OLD) == hook  # the retry takes it at once
    ledger.callback_delivered("m1", OLD)
    assert ledger.claim_callback("m1", OLD) is None


def test_an_unconfirmed_callback_claim_is_taken_again_after_its_lease(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.request("m1", OLD, "u", callback_url="https://hooks.example.org/a")
    assert ledger.callback_lease_left("m1", OLD) is None  # nothing claimed yet
    assert ledger.claim_callback("m1", OLD) is not None
    left = ledger.callback_lease_left("m1", OLD)
    assert left is not None
    assert 0 < left <= ledger_module.CALLBACK_LEASE_SECONDS
    monkeypatch.setattr(ledger_module, "CALLBACK_LEASE_SECONDS", 0.0)
    assert ledger.callback_lease_left("m1", OLD) == 0.0
    assert ledger.claim_callback("m1", OLD) is not None  # the first claimer died


def test_callbacks_belong_to_their_run(ledger: Ledger) -> None:
    ledger.store_chunk(chunk(0, 2, OLD), passages=1)  # chunks seen before the request
    ledger.request("m1", OLD, "u", callback_url="https://hooks.example.org/a")
    ledger.request("m1", OLD, "u", callback_url="https://hooks.example.org/other")
    record = ledger.get("m1")
    assert record is not None
    assert record.callback_url == "https://hooks.example.org/a"  # the first one stays
    ledger.request("m1", NEW, "u")  # a new submission without one
    record = ledger.get("m1")
    assert record is not None
    assert (record.callback_url, record.as_dict()["callback"]) == (None, False)
    assert ledger.claim_callback("m1", OLD) is None  # the old run's outcome is moot
    assert ledger.claim_callback("m1", NEW) is None
    assert ledger.claim_callback("nobody", NEW) is None


def test_an_older_database_gains_the_new_columns_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first_ledger(path, "m0")
    ledger = Ledger(path)
    record = ledger.get("m0")
    assert record is not None
    assert (record.callback_url, record.language, record.title) == (None, None, None)
    ledger.request(
        "m1", OLD, "u", callback_url="https://hooks.example.org/a",
        metadata=MediaMetadata(author="Charles Babbage"),
    )  # fmt: skip
    assert ledger.claim_callback("m1", OLD) == "https://hooks.example.org/a"
    assert (ledger.get("m1") or record).author == "Charles Babbage"
    assert ledger.forget("m0")


def _covered(seq: int, count: int, redecoded: float, uncovered: float, run: str = "r1") -> Any:
    return chunk(seq, count, run=run).model_copy(
        update={"speech_redecoded_seconds": redecoded, "speech_uncovered_seconds": uncovered}
    )


def test_speech_coverage_is_summed_per_run_once_per_chunk(ledger: Ledger) -> None:
    ledger.request("m1", "r1", "https://example.org/m1.mp3")
    ledger.store_chunk(_covered(0, 2, 1.5, 0.25), 1)
    ledger.store_chunk(_covered(0, 2, 1.5, 0.25), 1)  # redelivered: counted once
    ledger.store_chunk(_covered(1, 2, 2.0, 0.0), 1)
    record = ledger.get("m1")
    assert record is not None
    assert (record.speech_redecoded, record.speech_uncovered) == (3.5, 0.25)
    assert record.as_dict()["speech"] == {"redecoded_seconds": 3.5, "uncovered_seconds": 0.25}
    ledger.request("m1", "r2", "https://example.org/m1.mp3")  # a new run counts afresh
    again = ledger.get("m1")
    assert again is not None
    assert (again.speech_redecoded, again.speech_uncovered) == (0.0, 0.0)

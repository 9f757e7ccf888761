"""PineconeVectors against the loopback stand-in: batching within Pinecone's limits, our retry
policy (and not the SDK's), clear errors, stale ids, cosine hits, clipped text, lagging reads."""

from __future__ import annotations

import json
import secrets
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import SecretStr

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import PineconeSection
from streamscribe.embed.store.pinecone import PineconeVectors
from tests.pinecone_standin import (
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    MAX_UPSERT_VECTORS,
    PineconeStandin,
)

DIM = 384
URL = "https://example.com/talk.mp3"
SENTENCE = "this sentence has more than eight words in it, on purpose"


def new_key() -> str:
    return f"pc-secret-{secrets.token_hex(8)}"


def unit_rows(n: int, seed: int) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


def make_passages(n: int, media_id: str = "m-talk", seq: int = 0, text: str = "") -> list[Passage]:
    return [
        Passage(
            id=f"{media_id}:{seq:06d}:{index:03d}",
            media_id=media_id,
            seq=seq,
            index=index,
            start=30.0 * seq + 2 * index,
            end=30.0 * seq + 2 * index + 2,
            text=text or f"{SENTENCE} {seq}.{index}",
        )
        for index in range(n)
    ]


def section_for(server: PineconeStandin, **overrides: Any) -> PineconeSection:
    settings: dict[str, Any] = {
        "api_key": SecretStr(server.api_key),
        "index_host": server.url,
        "backoff_seconds": 0.001,
        "timeout_seconds": 10.0,
    }
    settings.update(overrides)
    return PineconeSection(**settings)


@contextmanager
def opened(section: PineconeSection, **kwargs: Any) -> Iterator[PineconeVectors]:
    backend = PineconeVectors(section, DIM, **kwargs)
    try:
        yield backend
    finally:
        backend.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def server() -> Iterator[PineconeStandin]:
    with PineconeStandin(api_key=new_key(), dimension=DIM) as standin:
        yield standin


def test_no_keyword_search(server: PineconeStandin) -> None:
    with opened(section_for(server)) as backend:
        assert backend.keyword_search is False
        assert backend.keyword("anything", 5) == []
    assert server.requests == []


@pytest.mark.parametrize("batch_size", [200, 1000])
def test_large_upsert_is_split_into_valid_requests(
    server: PineconeStandin, batch_size: int
) -> None:
    passages = make_passages(2500, text=SENTENCE * 4)
    with opened(section_for(server, batch_size=batch_size)) as backend:
        backend.upsert(passages, unit_rows(2500, seed=1), URL, [])
        upserts = server.data_requests()
        assert len(server.records()) == 2500
        assert backend.count() == 2500
    assert all(r.path == "/vectors/upsert" and r.status == 200 for r in upserts)
    assert all(1 <= r.items <= min(batch_size, MAX_UPSERT_VECTORS) for r in upserts)
    assert all(r.body_bytes <= MAX_REQUEST_BYTES for r in upserts)
    assert sum(r.items for r in upserts) == 2500
    if batch_size == 1000:
        # 1 000 records of 384 floats are several MB: the size, not the count, splits them
        assert len(upserts) > 3


def test_large_metadata_splits_by_size(server: PineconeStandin) -> None:
    passages = make_passages(300, text="ü" * 30_000)
    with opened(section_for(server, batch_size=1000)) as backend:
        backend.upsert(passages, unit_rows(300, seed=2), URL, [])
    upserts = server.data_requests()
    assert all(r.status == 200 and r.body_bytes <= MAX_REQUEST_BYTES for r in upserts)
    assert sum(r.items for r in upserts) == 300
    assert len(server.records()) == 300


def test_429_twice_then_success() -> None:
    with PineconeStandin(api_key=new_key(), dimension=DIM, fail_first=2) as server:
        with opened(section_for(server, max_attempts=6)) as backend:
            backend.upsert(make_passages(3), unit_rows(3, seed=3), URL, [])
            # exactly our three tries: the SDK's own retries are off
            assert [r.status for r in server.data_requests()] == [429, 429, 200]
            assert backend.count() == 3
        assert set(server.records()) == {p.id for p in make_passages(3)}


def test_5xx_is_retried_too() -> None:
    with PineconeStandin(api_key=new_key(), dimension=DIM, fail_first=1, fail_status=503) as s:
        with opened(section_for(s, max_attempts=2)) as backend:
            assert backend.count() == 0
        assert [r.status for r in s.data_requests()] == [503, 200]


def test_429_forever_gives_up_after_max_attempts() -> None:
    key = new_key()
    with PineconeStandin(api_key=key, dimension=DIM, fail_first=10**9) as server:
        with (
            opened(section_for(server, max_attempts=4)) as backend,
            pytest.raises(TransientError) as raised,
        ):
            backend.upsert(make_passages(2), unit_rows(2, seed=4), URL, [])
        assert [r.status for r in server.data_requests()] == [429] * 4
    assert "429" in str(raised.value)
    assert key not in str(raised.value)
    assert key not in "".join(traceback.format_exception(raised.value))


def test_unreachable_host_is_transient() -> None:
    with PineconeStandin(api_key=new_key(), dimension=DIM) as server:
        section = section_for(server, max_attempts=3)
    # stopped: connections are refused now
    with opened(section) as backend, pytest.raises(TransientError) as raised:
        backend.count()
    assert "3 times" in str(raised.value)
    assert section.api_key is not None
    assert section.api_key.get_secret_value() not in str(raised.value)


def test_wrong_key_is_a_clear_error(server: PineconeStandin) -> None:
    wrong = new_key()
    with (
        opened(section_for(server, api_key=SecretStr(wrong))) as backend,
        pytest.raises(ConfigError, match="refused the API key") as raised,
    ):
        backend.count()
    assert wrong not in str(raised.value)
    assert [r.status for r in server.requests] == [401]  # not retried


def test_other_4xx_is_a_config_error_with_the_server_message() -> None:
    # an index of another width refuses our vectors: no retry cures that
    with PineconeStandin(api_key=new_key(), dimension=8) as server:
        with (
            opened(section_for(server)) as backend,
            pytest.raises(ConfigError, match="HTTP 400: Vector dimension 384"),
        ):
            backend.upsert(make_passages(1), unit_rows(1, seed=5), URL, [])
        assert len(server.requests) == 1


def test_reupsert_with_fewer_passages_leaves_nothing_stale(server: PineconeStandin) -> None:
    first = make_passages(5)
    again = make_passages(3)
    stale = [p.id for p in first[3:]]
    with opened(section_for(server)) as backend:
        backend.upsert(first, unit_rows(5, seed=6), URL, [])
        backend.upsert(again, unit_rows(3, seed=7), URL, stale)
        assert backend.count() == 3
    assert set(server.records()) == {p.id for p in again}
    delete = [r for r in server.data_requests() if r.path == "/vectors/delete"]
    assert [r.items for r in delete] == [2]


def test_many_stale_ids_are_deleted_in_batches(server: PineconeStandin) -> None:
    many = make_passages(2500)
    with opened(section_for(server, batch_size=1000)) as backend:
        backend.upsert(many, unit_rows(2500, seed=8), URL, [])
        backend.upsert(many[:1], unit_rows(1, seed=9), URL, [p.id for p in many[1:]])
        assert backend.count() == 1
    deletes = [r for r in server.data_requests() if r.path == "/vectors/delete"]
    assert [r.items for r in deletes] == [1000, 1000, 499]


def test_ids_over_512_characters_are_refused_before_any_request(server: PineconeStandin) -> None:
    long_media = "m" * 600
    with opened(section_for(server)) as backend:
        with pytest.raises(ValueError, match="512"):
            backend.upsert(make_passages(1, media_id=long_media), unit_rows(1, seed=10), URL, [])
        with pytest.raises(ValueError, match="512"):
            backend.upsert([], np.zeros((0, DIM), dtype=np.float32), URL, ["x" * 513])
    assert server.requests == []


def test_nearest_returns_hits_best_first_with_metadata(server: PineconeStandin) -> None:
    passages = make_passages(50, media_id="m-near", seq=4)
    rows = unit_rows(50, seed=11)
    query = rows[7] + 0.05 * unit_rows(1, seed=12)[0]
    query /= np.linalg.norm(query)
    with opened(section_for(server)) as backend:
        backend.upsert(passages, rows, URL, [])
        hits = backend.nearest(query, 5)
    expected = np.argsort(-(rows @ query))[:5]
    assert [hit.id for hit in hits] == [passages[i].id for i in expected]
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert hits[0].score == pytest.approx(float(rows[7] @ query), abs=1e-5)
    best = passages[7]
    assert (hits[0].media_id, hits[0].source_url, hits[0].text) == ("m-near", URL, best.text)
    assert (hits[0].start, hits[0].end) == (best.start, best.end)


def test_nearest_on_an_empty_namespace(server: PineconeStandin) -> None:
    with opened(section_for(server, namespace="empty")) as backend:
        assert backend.nearest(unit_rows(1, seed=13)[0], 3) == []
        assert backend.nearest(unit_rows(1, seed=13)[0], 0) == []


def test_namespaces_are_separate(server: PineconeStandin) -> None:
    with (
        opened(section_for(server)) as default,
        opened(section_for(server, namespace="other")) as other,
    ):
        default.upsert(make_passages(2), unit_rows(2, seed=14), URL, [])
        other.upsert(make_passages(3, seq=1), unit_rows(3, seed=15), URL, [])
        assert (default.count(), other.count()) == (2, 3)
        assert {hit.id for hit in other.nearest(unit_rows(1, seed=16)[0], 10)} == {
            p.id for p in make_passages(3, seq=1)
        }
    assert len(server.records("")) == 2
    assert len(server.records("other")) == 3


def test_huge_text_is_clipped_under_40_kb_and_stored(server: PineconeStandin) -> None:
    # multi-byte characters and characters JSON escapes: bytes, not characters, are counted
    huge = ('word "quoted" \\ naïve 🎙️ ' * 20_000).strip()
    passage = make_passages(1, text=huge)
    row = unit_rows(1, seed=17)
    with opened(section_for(server)) as backend:
        backend.upsert(passage, row, URL, [])
        [hit] = backend.nearest(row[0], 1)
    stored = server.records()[passage[0].id]["metadata"]
    size = len(json.dumps(stored, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= 32 * 1024 < MAX_METADATA_BYTES
    assert size > 30 * 1024  # clipped, not emptied
    assert huge.startswith(hit.text)
    assert hit.text == stored["text"]


def test_count_catches_up_with_delayed_visibility() -> None:
    with (
        PineconeStandin(api_key=new_key(), dimension=DIM, visibility_delay=1.0) as server,
        opened(section_for(server)) as backend,
    ):
        passages = make_passages(10)
        backend.upsert(passages, unit_rows(10, seed=18), URL, [])
        assert backend.count() == 0  # written, not yet visible
        assert wait_for(lambda: backend.count() == 10, timeout=10.0)
        backend.upsert(passages[:4], unit_rows(4, seed=19), URL, [p.id for p in passages[4:]])
        assert wait_for(lambda: backend.count() == 4, timeout=10.0)


def test_index_name_creates_a_serverless_cosine_index() -> None:
    name = f"idx-{secrets.token_hex(4)}"
    with PineconeStandin(api_key=new_key(), dimension=DIM, ready_after=0.3) as server:
        section = section_for(server, index_host=None, index_name=name, region="eu-west-1")
        with opened(section, control_host=server.url) as backend:
            backend.upsert(make_passages(2), unit_rows(2, seed=20), URL, [])
            assert backend.count() == 2
        created = server.indexes[name]
        assert (created.dimension, created.cloud, created.region) == (DIM, "aws", "eu-west-1")
        creates = [r for r in server.requests if (r.method, r.path) == ("POST", "/indexes")]
        assert len(creates) == 1
        # opening again finds it: no second create
        with opened(section, control_host=server.url) as backend:
            assert backend.count() == 2
        assert len([r for r in server.requests if r.path == "/indexes"]) == 1


def test_an_existing_index_of_another_dimension_is_refused() -> None:
    name = f"idx-{secrets.token_hex(4)}"
    with PineconeStandin(api_key=new_key(), dimension=768, index_name=name) as server:
        section = section_for(server, index_host=None, index_name=name)
        with pytest.raises(ConfigError, match="768"):
            PineconeVectors(section, DIM, control_host=server.url)


def test_unusable_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="api_key"):
        PineconeVectors(PineconeSection(), DIM)
    section = PineconeSection(api_key=SecretStr(new_key()), index_host="no-such-host")
    with pytest.raises(ConfigError, match="cannot open the index"):
        PineconeVectors(section, DIM)


def test_close_twice(server: PineconeStandin) -> None:
    backend = PineconeVectors(section_for(server), DIM)
    backend.close()
    backend.close()


def test_forgetting_a_media_lists_its_ids_by_prefix_and_deletes_them_in_batches(
    server: PineconeStandin,
) -> None:
    with opened(section_for(server, batch_size=1000)) as backend:
        backend.upsert(make_passages(2500), unit_rows(2500, seed=30), URL, [])
        # media ids may hold colons: `m-talk:2`'s ids also start with `m-talk:`
        for other in ("m-talk:2", "m-talk2"):
            backend.upsert(make_passages(3, media_id=other), unit_rows(3, seed=31), URL, [])
        backend.delete_media("m-talk")
        assert backend.count() == 6
    assert {key.rsplit(":", 2)[0] for key in server.records()} == {"m-talk:2", "m-talk2"}
    requests = server.data_requests()
    lists = [r for r in requests if r.path == "/vectors/list"]
    assert len(lists) == 26  # 2503 ids under the prefix, 100 a page
    assert [r.items for r in requests if r.path == "/vectors/delete"] == [1000, 1000, 500]


def test_forgetting_an_unknown_media_lists_once_and_deletes_nothing(
    server: PineconeStandin,
) -> None:
    with opened(section_for(server)) as backend:
        backend.upsert(make_passages(2), unit_rows(2, seed=32), URL, [])
        backend.delete_media("m-nobody")
        assert backend.count() == 2
    paths = [r.path for r in server.data_requests()]
    assert paths[1:] == ["/vectors/list", "/describe_index_stats"]


def test_listing_is_retried_through_429(server: PineconeStandin) -> None:
    with opened(section_for(server)) as backend:
        backend.upsert(make_passages(3), unit_rows(3, seed=33), URL, [])
        server.fail_first = 3  # counted from now: the list is answered 429 three times
        backend.delete_media("m-talk")
        assert backend.count() == 0
    statuses = [(r.path, r.status) for r in server.data_requests()]
    assert statuses[1:4] == [("/vectors/list", 429)] * 3


def test_the_standin_pages_a_list_as_pinecone_does(server: PineconeStandin) -> None:
    with opened(section_for(server)) as backend:
        backend.upsert(make_passages(5), unit_rows(5, seed=34), URL, [])
    headers = {"api-key": server.api_key}
    status, page = server.handle("GET", "/vectors/list?prefix=m-talk%3A&limit=2", headers, b"")
    assert (status, [v["id"] for v in page["vectors"]]) == (200, [p.id for p in make_passages(2)])
    token = page["pagination"]["next"]
    _, last = server.handle("GET", f"/vectors/list?limit=3&paginationToken={token}", headers, b"")
    assert [v["id"] for v in last["vectors"]] == [p.id for p in make_passages(5)[2:]]
    assert "pagination" not in last
    status, _ = server.handle("GET", "/vectors/list?limit=101", headers, b"")
    assert status == 400

"""Ingest's real router and resources (`streamscribe.ingest.app.service`) on FastStream's
in-memory broker: a request for a WAV on a loopback site (made here, allow-listed by
ALLOWED_HOSTS) becomes its `media.audio` chunks, through the real URL guard, yt-dlp, egress
proxy and decoder child; a refused URL becomes one `media.failed` and no audio.

In memory, a publish returns once every handler it reached has run (what they published
included), so each assertion after a publish sees its whole outcome: nothing to wait for.
The handler's own limits (socket timeout, download deadline) bound each download."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common.audio import SAMPLE_RATE, decode_chunk
from streamscribe.common.delivery import ATTEMPT, ERROR, ORIGIN, STAGE, publish_event
from streamscribe.common.drain import marker
from streamscribe.common.events import AudioChunk, MediaMetadata, MediaRequested, media_id_for_url
from streamscribe.common.settings import KafkaSettings, RetrySettings, TopicSettings
from streamscribe.ingest import app as ingest_app
from streamscribe.ingest.handlers import STAGE as INGEST
from streamscribe.ingest.settings import IngestSection, IngestSettings
from tests import hostile_servers
from tests.hostile_servers import SITE_HOST, Site
from tests.router_case import in_memory

RUN = "1700000000000-test"
# Short chunks, so that a few seconds of audio make several of them.
CHUNK_MIN_SECONDS, CHUNK_MAX_SECONDS = 2.0, 3.0
BEEPS, BEEP_SECONDS, GAP_SECONDS = 6, 1.0, 0.6
DURATION = BEEPS * (BEEP_SECONDS + GAP_SECONDS)


def _beeps() -> bytes:
    """16-bit PCM at 16 kHz: tones of rising pitch, each followed by silence (a clear pause)."""
    pieces = []
    for n in range(BEEPS):
        t = np.arange(int(BEEP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
        pieces += [
            0.3 * np.sin(2 * np.pi * (300 + 100 * n) * t),
            np.zeros(int(GAP_SECONDS * SAMPLE_RATE)),
        ]
    return (np.concatenate(pieces) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A loopback HTTP site on a free port serving `beeps.wav` and `notes.txt`."""
    root = tmp_path_factory.mktemp("site")
    with wave.open(str(root / "beeps.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(_beeps())
    (root / "notes.txt").write_text("Not audio at all.\n" * 50)
    with hostile_servers.site(root) as served:
        yield served


@dataclass
class Ingest:
    """Ingest's router on a started in-memory broker, and spies on what it publishes."""

    broker: KafkaBroker
    settings: IngestSettings
    seen: dict[str, list[KafkaMessage]] = field(default_factory=dict)

    async def request(self, request: MediaRequested) -> None:
        key = request.resolved_id.encode()
        await publish_event(self.broker, self.settings.topics.requested, request, key)

    @property
    def audio(self) -> list[AudioChunk]:
        messages = self.seen.get(self.settings.topics.audio, [])
        return [AudioChunk.model_validate_json(message.body) for message in messages]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.seen.get(self.settings.topics.failed, [])]

    def on(self, topic: str) -> list[KafkaMessage]:
        return self.seen.get(topic, [])

    def keys(self, topic: str) -> list[bytes]:
        records = [message.raw_message for message in self.on(topic)]
        assert not any(isinstance(record, tuple) for record in records), "one record a message"
        return [record.key for record in records if not isinstance(record, tuple)]

    def job_dirs(self) -> list[Path]:
        return list((self.settings.temp_root / INGEST).iterdir())


@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(
        kafka=KafkaSettings(),
        topics=TopicSettings(prefix=f"t-{uuid.uuid4().hex[:8]}."),
        retry=RetrySettings(max_attempts=2, backoff_seconds=0),
        data_dir=tmp_path,
        temp_root=tmp_path / "tmp",
        ingest=IngestSection(
            allowed_hosts=[SITE_HOST],  # the test site's address only: other loopbacks refused
            chunk_min_seconds=CHUNK_MIN_SECONDS,
            chunk_max_seconds=CHUNK_MAX_SECONDS,
            overlap_seconds=0.5,
            max_duration_seconds=60,
            max_download_seconds=20,
            socket_timeout_seconds=10,
        ),
    )


@pytest.fixture
async def ingest(settings: IngestSettings) -> AsyncIterator[Ingest]:
    """As `build_app` does: the service's router on a broker, its resources opened and put in
    the broker's context; then the broker patched to run in memory."""
    topics = settings.topics
    spied = (topics.audio, topics.transcript, topics.failed, *_twins(topics.requested))
    async with in_memory(ingest_app.service(settings), spied) as running:
        yield Ingest(running.broker, settings, running.seen)


def _twins(topic: str) -> tuple[str, str]:
    return f"{topic}.retry", f"{topic}.dlq"


async def test_a_wav_on_an_allowed_site_becomes_consecutive_audio_chunks(
    ingest: Ingest, site: Site
) -> None:
    url = site.url("beeps.wav")
    await ingest.request(MediaRequested(url=url, language="en", run=RUN))
    chunks = ingest.audio
    count = len(chunks)
    assert count >= DURATION / CHUNK_MAX_SECONDS
    assert [c.seq for c in chunks] == list(range(count))
    assert {(c.media_id, c.run, c.source_url, c.language) for c in chunks} == {
        (media_id_for_url(url), RUN, url, "en")
    }
    assert [c.final for c in chunks] == [False] * (count - 1) + [True]
    assert [c.chunk_count for c in chunks] == [None] * (count - 1) + [count]
    # the chunks tile the media: each starts where the one before ended
    assert chunks[0].start == 0
    for before, after in itertools.pairwise(chunks):
        assert after.start == pytest.approx(before.end, abs=0.01)
        assert before.next_lead_in == after.lead_in
    assert chunks[-1].end == pytest.approx(DURATION, abs=0.05)
    for c in chunks:  # real Ogg/Opus of the chunk's span (and its lead-in), within the limit
        seconds = len(decode_chunk(c.audio)) / SAMPLE_RATE
        assert seconds == pytest.approx(c.end - c.start + c.lead_in, abs=0.1), c.seq
        assert c.end - c.start + c.lead_in <= CHUNK_MAX_SECONDS + 0.01
    # keyed media:seq, so a long media spreads over partitions
    assert ingest.keys(ingest.settings.topics.audio) == [c.chunk_id.encode() for c in chunks]
    assert ingest.failed == []
    assert ingest.job_dirs() == []  # the job's temp dir went with the job
    for topic in _twins(ingest.settings.topics.requested):
        assert ingest.on(topic) == [], topic


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http and https URLs are fetched, not file"),
        ("http://169.254.169.254/latest/meta-data/", "link-local (the cloud metadata endpoint)"),
        ("http://0x7f.0.0.2/beeps.wav", "loopback"),  # 127.0.0.2: not the allowed 127.0.0.1
    ],
)
async def test_a_url_the_guard_refuses_fails_once_with_no_audio(
    ingest: Ingest, url: str, why: str
) -> None:
    await ingest.request(MediaRequested(url=url, media_id="m-refused", run=RUN))
    [failed] = ingest.failed
    assert (failed["media_id"], failed["stage"], failed["reason"]) == (
        "m-refused",
        INGEST,
        "refused_url",
    )
    assert why in failed["detail"]
    assert (failed["source_url"], failed["run"]) == (url, RUN)
    assert ingest.audio == []
    for topic in _twins(ingest.settings.topics.requested):
        assert ingest.on(topic) == [], topic  # terminal: no retry, no dead letter


@pytest.mark.parametrize(
    ("name", "reason"), [("missing.wav", "not_found"), ("notes.txt", "unsupported_media")]
)
async def test_what_the_allowed_site_cannot_give_fails_with_its_reason(
    ingest: Ingest, site: Site, name: str, reason: str
) -> None:
    await ingest.request(MediaRequested(url=site.url(name), run=RUN))
    [failed] = ingest.failed
    assert (failed["stage"], failed["reason"], failed["run"]) == (INGEST, reason, RUN)
    assert str(ingest.settings.temp_root) not in failed["detail"]  # no job paths in reasons
    assert ingest.audio == []
    assert ingest.job_dirs() == []


async def test_an_invalid_request_is_dead_lettered_and_fails_the_media_it_names(
    ingest: Ingest, site: Site
) -> None:
    url = site.url("beeps.wav")
    body = json.dumps({"url": url, "captions": "sometimes"}).encode()
    await ingest.broker.publish(body, ingest.settings.topics.requested, key=b"k")
    [dead] = ingest.on(f"{ingest.settings.topics.requested}.dlq")
    assert dead.body == body
    assert (dead.headers[STAGE], dead.headers[ORIGIN]) == (INGEST, ingest.settings.topics.requested)
    assert "captions" in dead.headers[ERROR]
    [failed] = ingest.failed
    assert (failed["media_id"], failed["reason"]) == (media_id_for_url(url), "invalid_event")
    assert ingest.audio == []  # nothing was fetched


async def test_while_the_broker_drains_a_request_waits_and_publishes_nothing(
    ingest: Ingest, site: Site
) -> None:
    marker(ingest.settings.data_dir).touch()
    await ingest.request(MediaRequested(url=site.url("beeps.wav"), run=RUN))
    assert ingest.audio == []
    assert ingest.failed == []
    for topic in _twins(ingest.settings.topics.requested):
        assert ingest.on(topic) == [], topic
    # once the drain is over, the same request is ingested
    marker(ingest.settings.data_dir).unlink()
    await ingest.request(MediaRequested(url=site.url("beeps.wav"), run=RUN))
    assert ingest.audio != []
    assert ingest.audio[-1].final


class _Unavailable(BaseHTTPRequestHandler):
    """Answers every request 503, counting them."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def unavailable() -> Iterator[tuple[str, type[_Unavailable]]]:
    """A loopback server, on a free port, that is always unavailable: its URL and its handler."""
    handler = type("Unavailable", (_Unavailable,), {})
    server = ThreadingHTTPServer((SITE_HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{SITE_HOST}:{server.server_address[1]}/talk.wav", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_an_unavailable_server_is_retried_then_dead_lettered_not_failed(
    ingest: Ingest, unavailable: tuple[str, type[_Unavailable]]
) -> None:
    url, server = unavailable
    await ingest.request(MediaRequested(url=url, run=RUN))
    requested = ingest.settings.topics.requested
    # max_attempts 2, no backoff: the retry releaser put the request back once
    [retry] = ingest.on(f"{requested}.retry")
    assert (retry.headers[ATTEMPT], retry.headers[ORIGIN]) == ("2", requested)
    [dead] = ingest.on(f"{requested}.dlq")
    assert dead.headers[ATTEMPT] == "2"
    assert "503" in dead.headers[ERROR]
    assert server.requests >= 2  # each attempt asked the server again
    assert ingest.failed == []  # transient: never a terminal failure
    assert ingest.audio == []
    assert ingest.job_dirs() == []


async def test_the_chunks_carry_what_the_probe_found_and_the_request_said(
    ingest: Ingest, site: Site
) -> None:
    url = site.url("beeps.wav")
    given = MediaMetadata(author="The beep choir")  # a client may know more than the site
    await ingest.request(MediaRequested(url=url, run=RUN, metadata=given))
    chunks = ingest.audio
    assert chunks
    # yt-dlp names a direct link by its file; the request's author fills what the site lacks
    expected = MediaMetadata(title="beeps", author="The beep choir", webpage_url=url)
    for chunk in chunks:  # every chunk: the ledger may store any of them first
        assert chunk.metadata is not None
        assert chunk.metadata.model_dump(exclude={"published", "duration"}) == (
            expected.model_dump(exclude={"published", "duration"})
        )

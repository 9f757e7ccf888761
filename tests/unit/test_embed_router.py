"""Embed's real router and resources (`streamscribe.embed.app.service`) on FastStream's in-memory
broker, with the real ONNX embedder (loaded once per session) and a SQLite index in tmp_path:
transcripts in, passages and ledger rows stored, exactly one `media.indexed` per run out.

In memory, a publish returns once every handler it reached has run (what they published
included), so each assertion after a publish sees its whole outcome: nothing to wait for."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common.delivery import ERROR, ORIGIN, STAGE, publish_event
from streamscribe.common.events import (
    Event,
    MediaMetadata,
    MediaRequested,
    Segment,
    Transcript,
    Word,
)
from streamscribe.common.settings import KafkaSettings, RetrySettings, TopicSettings
from streamscribe.embed import app as embed_app
from streamscribe.embed.embedder import TextEmbedder, load_embedder
from streamscribe.embed.handlers import STAGE as EMBED
from streamscribe.embed.handlers import Resources
from streamscribe.embed.settings import EmbedSection, EmbedSettings
from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.conftest import SHARED_ONNX_DIR
from tests.router_case import in_memory

URL = "https://example.org/talk.mp3"
RUN_A = "1700000000000-aaaa"
RUN_B = "1700000000001-bbbb"
# Each sentence is a passage of its own: at least 8 words (shorter segments are merged).
SENTENCES = [
    "The committee discussed the budget for the coming year at length.",
    "Several members asked why the library needs a new roof so soon.",
    "A volunteer explained how the river cleanup was organised last spring.",
    "Everyone agreed that the bridge repairs cannot wait another winter.",
    "The treasurer promised a detailed report on the parking revenue next month.",
    "Finally the chair thanked the students who recorded the whole meeting.",
]


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> TextEmbedder:
    """The real ONNX embedder, loaded once for the session (exported first if missing)."""
    section = EmbedSection(onnx_dir=SHARED_ONNX_DIR)
    return load_embedder(section, tmp_path_factory.mktemp("embed-data"))


@dataclass
class Embed:
    """Embed's router on a started in-memory broker, its resources, and spies on its outcomes."""

    broker: KafkaBroker
    settings: EmbedSettings
    resources: Resources
    seen: dict[str, list[KafkaMessage]] = field(default_factory=dict)

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(message.body) for message in self.seen.get(topic, [])]

    @property
    def indexed(self) -> list[dict[str, Any]]:
        return self.bodies(self.settings.topics.indexed)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.bodies(self.settings.topics.failed)

    @property
    def dead(self) -> list[KafkaMessage]:
        return self.seen.get(f"{self.settings.topics.transcript}.dlq", [])

    async def send(self, event: Event, topic: str | None = None) -> None:
        """Publish `event` as the pipeline does (plain JSON, keyed by media)."""
        key = str(getattr(event, "media_id", None) or "").encode()
        await publish_event(self.broker, topic or self.settings.topics.transcript, event, key)

    def passages(self) -> int:
        vectors = self.resources.index.vectors
        assert isinstance(vectors, SQLiteVectors)
        counts = vectors.counts()
        assert len(set(counts.values())) == 1, counts  # passages, FTS and vectors in step
        return counts["passages"]


@pytest.fixture
def settings(tmp_path: Path) -> EmbedSettings:
    return EmbedSettings(
        kafka=KafkaSettings(),
        topics=TopicSettings(prefix=f"t-{uuid.uuid4().hex[:8]}."),
        retry=RetrySettings(max_attempts=2, backoff_seconds=0),
        data_dir=tmp_path,
        temp_root=tmp_path / "tmp",
        embed=EmbedSection(onnx_dir=SHARED_ONNX_DIR),
    )


@pytest.fixture
def session_embedder(
    embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TextEmbedder]:
    """The app's resources load the session's embedder instead of loading one per test."""
    batch_size = embedder.batch_size
    monkeypatch.setattr(embed_app, "shared_embedder", lambda *_: embedder)
    yield embedder
    embedder.batch_size = batch_size  # the resources size it to the memory budget


@pytest.fixture
async def embed(settings: EmbedSettings, session_embedder: TextEmbedder) -> AsyncIterator[Embed]:
    """As `build_app` does: the service's router on a broker, its resources opened and put in
    the broker's context; then the broker patched to run in memory."""
    topics = settings.topics
    spied = [
        topics.indexed,
        topics.failed,
        f"{topics.transcript}.dlq",
        f"{topics.transcript}.retry",
    ]
    async with in_memory(embed_app.service(settings), spied) as running:
        resources = running.broker.context.get(EMBED)
        assert isinstance(resources, Resources)
        assert resources.embedder is session_embedder
        yield Embed(running.broker, settings, resources, running.seen)


def chunk(seq: int, count: int, run: str | None = RUN_A, media_id: str = "m-talk") -> Transcript:
    """Chunk `seq` of `count`: two sentences with their word times."""
    start = seq * 30.0
    segments = [
        _segment(start + 2 + 10 * i, SENTENCES[(2 * seq + i) % len(SENTENCES)]) for i in (0, 1)
    ]
    final = seq == count - 1
    return Transcript(
        media_id=media_id, seq=seq, start=start, end=start + 30, final=final,
        chunk_count=count if final else None, source_url=URL, language="en", run=run,
        segments=segments,
    )  # fmt: skip


def _segment(start: float, text: str) -> Segment:
    words = [
        Word(start=start + 0.5 * i, end=start + 0.5 * i + 0.4, word=f" {word}", probability=0.9)
        for i, word in enumerate(text.split())
    ]
    return Segment(start=start, end=words[-1].end, text=text, words=words)


async def test_every_chunk_out_of_order_and_once_twice_gives_one_media_indexed(
    embed: Embed,
) -> None:
    ledger = embed.resources.index.ledger
    for seq in (2, 0, 0):  # the final chunk first, and one chunk delivered twice
        await embed.send(chunk(seq, 3))
        assert embed.indexed == [], f"announced before chunk 1 is in (after chunk {seq})"
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.state, record.run, record.chunks_stored, record.chunk_count) == (
        "transcribing", RUN_A, 2, 3,
    )  # fmt: skip
    await embed.send(chunk(1, 3))
    [indexed] = embed.indexed
    assert indexed["media_id"] == "m-talk"
    assert (indexed["run"], indexed["chunk_count"], indexed["source_url"]) == (RUN_A, 3, URL)
    assert indexed["passage_count"] == 6 == embed.passages()  # two sentences a chunk, no doubles
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.state, record.chunks_stored, record.passages) == ("indexed", 3, 6)
    # a redelivery after the announcement changes nothing and announces nothing
    await embed.send(chunk(1, 3))
    assert len(embed.indexed) == 1
    assert embed.passages() == 6
    assert embed.failed == []
    assert embed.dead == []


async def test_stored_passages_are_searchable_with_their_word_times(embed: Embed) -> None:
    for seq in range(2):
        await embed.send(chunk(seq, 2))
    assert len(embed.indexed) == 1
    index, vectors = embed.resources.index, embed.resources.embedder
    query = "repairs of the bridge before winter"
    [hit, *_] = index.search(query, vectors.embed([query]), 3, "hybrid")
    assert (hit.media_id, hit.text) == ("m-talk", SENTENCES[3])
    # chunk 1's second sentence starts at 42 s, a word every 0.5 s: the hit starts at "bridge"
    assert hit.start == 42.0 + 0.5 * SENTENCES[3].split().index("bridge")
    segments = list(index.segments("m-talk"))
    assert [s.text for s in segments] == SENTENCES[:4]
    assert segments[1].words is not None
    assert [w.word.strip() for w in segments[1].words] == SENTENCES[1].split()


async def test_a_late_transcript_of_an_older_run_changes_nothing(embed: Embed) -> None:
    ledger = embed.resources.index.ledger
    await embed.send(chunk(0, 2, run=RUN_A))
    # the media is submitted again: the ledger follows media.requested and starts run B
    request = MediaRequested(url=URL, media_id="m-talk", run=RUN_B)
    await embed.send(request, embed.settings.topics.requested)
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.run, record.state, record.chunks_stored) == (RUN_B, "requested", 0)
    passages = embed.passages()
    await embed.send(chunk(1, 2, run=RUN_A))  # run A's last chunk, late: it would complete A
    assert embed.indexed == []
    assert embed.passages() == passages
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.run, record.state, record.chunks_stored) == (RUN_B, "requested", 0)
    # run B's own chunks complete it, once, whatever run A left behind
    for seq in (1, 0):
        await embed.send(chunk(seq, 2, run=RUN_B))
    assert [(i["run"], i["chunk_count"]) for i in embed.indexed] == [(RUN_B, 2)]
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.run, record.state, record.chunks_stored) == (RUN_B, "indexed", 2)
    assert embed.failed == []
    assert embed.dead == []


async def test_a_requests_callback_url_is_kept_with_its_run(embed: Embed) -> None:
    hook = "https://hooks.example.org/done?token=t"
    request = MediaRequested(url=URL, media_id="m-talk", run=RUN_A, callback_url=hook)
    await embed.send(request, embed.settings.topics.requested)
    ledger = embed.resources.index.ledger
    record = ledger.get("m-talk")
    assert record is not None
    assert (record.run, record.callback_url) == (RUN_A, hook)
    assert ledger.claim_callback("m-talk", RUN_A) == hook


async def test_what_a_request_says_of_the_media_is_in_the_ledger(embed: Embed) -> None:
    given = MediaMetadata(title="Budget day", published="2024-03-01")
    request = MediaRequested(url=URL, media_id="m-talk", run=RUN_A, metadata=given)
    await embed.send(request, embed.settings.topics.requested)
    record = embed.resources.index.ledger.get("m-talk")
    assert record is not None
    assert (record.title, record.published, record.author) == ("Budget day", "2024-03-01", None)


async def test_a_late_transcript_of_a_forgotten_media_is_skipped(embed: Embed) -> None:
    await embed.send(chunk(0, 2, run=RUN_A))
    assert embed.passages() > 0
    assert embed.resources.index.forget("m-talk")
    assert embed.passages() == 0
    await embed.send(chunk(1, 2, run=RUN_A))  # still in flight when it was forgotten
    assert embed.resources.index.ledger.get("m-talk") is None
    assert embed.passages() == 0
    assert embed.indexed == []
    await embed.send(chunk(0, 1, run=RUN_B))  # submitted again: indexed anew
    assert [(i["run"], i["chunk_count"]) for i in embed.indexed] == [(RUN_B, 1)]


async def test_an_invalid_transcript_naming_a_media_is_dead_lettered_and_fails_it(
    embed: Embed,
) -> None:
    topic = embed.settings.topics.transcript
    body = json.loads(chunk(0, 1).model_dump_json())
    body["seq"] = -1  # not a chunk number
    await embed.broker.publish(json.dumps(body).encode(), topic, key=b"m-talk")
    [dead] = embed.dead
    assert dead.headers[STAGE] == EMBED
    assert dead.headers[ORIGIN] == topic
    assert "seq" in dead.headers[ERROR]
    [failed] = embed.failed
    assert (failed["media_id"], failed["stage"], failed["reason"]) == (
        "m-talk", EMBED, "invalid_event",
    )  # fmt: skip
    # embed's ledger follows media.failed: the media's status says why it failed
    record = embed.resources.index.ledger.get("m-talk")
    assert record is not None
    assert record.state == "failed"
    assert record.failure is not None
    assert record.failure["reason"] == "invalid_event"
    assert embed.indexed == []
    assert embed.passages() == 0


async def test_an_unparseable_transcript_is_only_dead_lettered(embed: Embed) -> None:
    await embed.broker.publish(b"{not json", embed.settings.topics.transcript)
    [dead] = embed.dead
    assert dead.body == b"{not json"
    assert embed.failed == []  # it names no media
    assert embed.resources.index.ledger.recent() == []
    # and the stage goes on: the next transcript is indexed
    await embed.send(chunk(0, 1))
    assert [i["media_id"] for i in embed.indexed] == ["m-talk"]


async def test_a_late_invalid_transcript_of_an_older_run_changes_nothing(embed: Embed) -> None:
    request = MediaRequested(url=URL, media_id="m-talk", run=RUN_B)
    await embed.send(request, embed.settings.topics.requested)
    await embed.send(chunk(0, 2, run=RUN_B))
    late = json.loads(chunk(0, 2, run=RUN_A).model_dump_json())
    late["seq"] = -1  # a malformed event of run A, redelivered late
    await embed.broker.publish(json.dumps(late).encode(), embed.settings.topics.transcript)
    assert len(embed.dead) == 1  # dead-lettered, as it should be
    await embed.send(chunk(1, 2, run=RUN_B))
    # run B is unharmed by run A's event: it completes, once
    assert [(i["run"], i["chunk_count"]) for i in embed.indexed] == [(RUN_B, 2)]

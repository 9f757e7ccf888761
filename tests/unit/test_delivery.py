"""The one place that decides ack, retry, dead letter or fail (a FastStream middleware on each
stage's router), on FastStream's in-memory broker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import logcontext
from streamscribe.common.consumer import Stage
from streamscribe.common.delivery import ATTEMPT, ERROR, NOT_BEFORE, ORIGIN, STAGE
from streamscribe.common.errors import MediaError, TransientError
from streamscribe.common.events import AudioChunk, MediaRequested, Reason, encode_event
from streamscribe.common.settings import CommonSettings, RetrySettings, TopicSettings

TOPIC = "t.media.requested"


class Outcome:
    def __init__(self) -> None:
        self.messages: dict[str, list[KafkaMessage]] = {}
        self.processed: list[str] = []


@pytest.fixture
async def harness() -> AsyncIterator[tuple[KafkaBroker, Outcome]]:
    settings = CommonSettings(
        topics=TopicSettings(prefix="t."), retry=RetrySettings(max_attempts=3, backoff_seconds=0)
    )
    broker = KafkaBroker()
    outcome = Outcome()
    stage = Stage(settings, "ingest")

    async def work(event: MediaRequested) -> None:
        if "permanent" in event.url:
            raise MediaError(Reason.NOT_FOUND, "gone")
        if "flaky" in event.url:
            raise TransientError("HTTP Error 503")
        outcome.processed.append(event.url)

    stage.subscribe(TOPIC, "g", work)
    broker.include_router(stage.router)

    def spy_on(topic: str) -> None:
        async def spy(message: KafkaMessage) -> None:
            outcome.messages.setdefault(topic, []).append(message)

        broker.subscriber(topic, group_id=f"spy-{topic}")(spy)

    for topic in ("t.media.failed", f"{TOPIC}.retry", f"{TOPIC}.dlq"):
        spy_on(topic)

    async with TestKafkaBroker(broker) as test_broker:
        yield test_broker, outcome


async def test_a_valid_event_is_processed(harness: tuple[KafkaBroker, Outcome]) -> None:
    broker, outcome = harness
    await broker.publish(b'{"url": "http://ok"}', TOPIC)
    assert outcome.processed == ["http://ok"]
    assert outcome.messages == {}


async def test_unparseable_event_is_dead_lettered_with_headers(
    harness: tuple[KafkaBroker, Outcome],
) -> None:
    broker, outcome = harness
    await broker.publish(b"{not json", TOPIC)
    [dead] = outcome.messages[f"{TOPIC}.dlq"]
    assert dead.body == b"{not json"
    assert dead.headers[STAGE] == "ingest"
    assert dead.headers[ORIGIN] == TOPIC
    assert "InvalidEventError" in dead.headers[ERROR]
    assert "t.media.failed" not in outcome.messages


async def test_invalid_event_naming_a_media_also_fails_it(
    harness: tuple[KafkaBroker, Outcome],
) -> None:
    broker, outcome = harness
    await broker.publish(b'{"url": "http://x", "language": 5}', TOPIC)
    [failed] = outcome.messages["t.media.failed"]
    assert json.loads(failed.body)["reason"] == "invalid_event"
    assert len(outcome.messages[f"{TOPIC}.dlq"]) == 1


async def test_permanent_error_ends_in_media_failed(harness: tuple[KafkaBroker, Outcome]) -> None:
    broker, outcome = harness
    await broker.publish(b'{"url": "http://permanent", "media_id": "m1"}', TOPIC)
    [failed] = outcome.messages["t.media.failed"]
    body = json.loads(failed.body)
    assert (body["media_id"], body["reason"], body["stage"]) == ("m1", "not_found", "ingest")
    assert f"{TOPIC}.retry" not in outcome.messages


async def test_transient_error_is_retried_then_dead_lettered(
    harness: tuple[KafkaBroker, Outcome],
) -> None:
    broker, outcome = harness
    await broker.publish(b'{"url": "http://flaky"}', TOPIC)
    # the retry releaser puts each back with its headers; the last allowed attempt dead-letters
    retries = outcome.messages[f"{TOPIC}.retry"]
    assert [retry.headers[ATTEMPT] for retry in retries] == ["2", "3"]
    assert all(float(retry.headers[NOT_BEFORE]) > 0 for retry in retries)
    assert {retry.headers[ORIGIN] for retry in retries} == {TOPIC}
    [dead] = outcome.messages[f"{TOPIC}.dlq"]
    assert dead.headers[ATTEMPT] == "3"
    assert "HTTP Error 503" in dead.headers[ERROR]
    assert outcome.processed == []


async def test_log_lines_while_handling_name_the_media_and_chunk() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s%(about)s: %(message)s"))
    handler.addFilter(logcontext.AboutFilter())
    logger = logging.getLogger("test.about")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    broker = KafkaBroker()
    stage = Stage(CommonSettings(), "transcribe")

    async def work(chunk: AudioChunk) -> None:
        logger.info("in the loop")
        await asyncio.to_thread(logger.info, "in a worker thread")

    stage.subscribe("t.media.audio", "g", work)
    broker.include_router(stage.router)

    chunk = AudioChunk(media_id="m-7", seq=3, start=0, end=1, source_url="u", audio=b"x")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(encode_event(chunk), "t.media.audio")
    logger.info("after it")
    logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "test.about [m-7 seq=3]",
        "test.about [m-7 seq=3]",
        "test.about",
    ]


async def test_a_request_without_a_run_gets_its_records_and_keeps_one_it_names() -> None:
    broker = KafkaBroker()
    stage = Stage(CommonSettings(), "ingest")
    runs: list[str | None] = []

    async def work(event: MediaRequested) -> None:
        runs.append(event.run)

    stage.subscribe(TOPIC, "g", work)
    broker.include_router(stage.router)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b'{"url": "http://a"}', TOPIC)
        await test_broker.publish(b'{"url": "http://a", "run": "1700000000000-x"}', TOPIC)
    assert runs[0] is not None
    assert re.fullmatch(r"\d{13}-p\d+-o\d+", runs[0])
    assert runs[1] == "1700000000000-x"


async def test_a_follower_skips_invalid_events_and_leaves_them_to_the_owner() -> None:
    broker = KafkaBroker()
    stage = Stage(CommonSettings(topics=TopicSettings(prefix="t.")), "embed")
    followed: list[str] = []
    dead: list[KafkaMessage] = []

    async def follow(event: MediaRequested) -> None:
        followed.append(event.url)

    stage.follow(TOPIC, "ledger", follow)
    broker.include_router(stage.router)

    @broker.subscriber(f"{TOPIC}.dlq", group_id="spy")
    async def spy(message: KafkaMessage) -> None:
        dead.append(message)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{not json", TOPIC)
        await test_broker.publish(b'{"url": "http://ok"}', TOPIC)
    assert followed == ["http://ok"]
    assert dead == []  # the owner's delivery dead-letters it, not a follower's


def test_a_handler_must_take_an_event_model_first() -> None:
    stage = Stage(CommonSettings(), "ingest")

    async def untyped(message: bytes) -> None: ...

    with pytest.raises(TypeError, match="must take an event model"):
        stage.subscribe(TOPIC, "g", untyped)


async def test_each_record_of_a_batch_has_its_own_outcome_and_the_batch_commits_after() -> None:
    settings = CommonSettings(
        topics=TopicSettings(prefix="t."), retry=RetrySettings(max_attempts=2, backoff_seconds=0)
    )
    broker = KafkaBroker()
    stage = Stage(settings, "ingest")
    seen: list[str] = []  # what happened, in order

    async def work(event: MediaRequested) -> None:
        await asyncio.sleep(0)  # the records of a batch run concurrently
        if "permanent" in event.url:
            raise MediaError(Reason.NOT_FOUND, "gone")
        if "flaky" in event.url:
            raise TransientError("HTTP Error 503")
        seen.append(event.url)

    async def on_batch(batch: KafkaMessage) -> None:
        works = stage.delivery.settlements(
            batch, MediaRequested, work, broker
        )  # patched: in memory
        await asyncio.gather(*(one() for one in works))
        seen.append(f"commit {len(works)}")
        await stage.delivery.commit(batch)

    stage.subscribe_batches(TOPIC, "g", on_batch, max_records=8)
    broker.include_router(stage.router)
    spied: dict[str, list[KafkaMessage]] = {}

    def spy_on(topic: str) -> None:
        async def spy(message: KafkaMessage) -> None:
            spied.setdefault(topic, []).append(message)

        broker.subscriber(topic, group_id=f"spy-{topic}")(spy)

    for topic in ("t.media.failed", f"{TOPIC}.retry", f"{TOPIC}.dlq"):
        spy_on(topic)

    bodies = [b'{"url": "http://ok"}', b'{"url": "http://permanent"}', b'{"url": "http://flaky"}']
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(*bodies, b"{not json", topic=TOPIC)
    # the in-memory broker delivers the flaky one's retry (a batch of one) before it returns
    assert seen == ["http://ok", "commit 1", "commit 4"]  # the batch: once, after every outcome
    failed = [json.loads(m.body)["reason"] for m in spied["t.media.failed"]]
    assert failed == ["not_found"]
    [retry] = spied[f"{TOPIC}.retry"]
    assert retry.body == bodies[2]
    assert sorted(m.body for m in spied[f"{TOPIC}.dlq"]) == [
        b'{"url": "http://flaky"}',
        b"{not json",
    ]

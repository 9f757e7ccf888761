"""The one place that decides ack, retry, dead letter or fail, on FastStream's in-memory broker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import logcontext
from streamscribe.common.delivery import ATTEMPT, ERROR, NOT_BEFORE, ORIGIN, STAGE, Delivery
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
    delivery = Delivery(broker, settings, "ingest")

    async def work(event: MediaRequested) -> None:
        if "permanent" in event.url:
            raise MediaError(Reason.NOT_FOUND, "gone")
        if "flaky" in event.url:
            raise TransientError("HTTP Error 503")
        outcome.processed.append(event.url)

    @broker.subscriber(TOPIC, group_id="g")
    async def handle(message: KafkaMessage) -> None:
        await delivery.handle(message, MediaRequested, work)

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
    [retry] = outcome.messages[f"{TOPIC}.retry"]
    assert retry.headers[ATTEMPT] == "2"
    assert float(retry.headers[NOT_BEFORE]) > 0
    # the retry releaser puts it back with its headers; the last allowed attempt dead-letters
    await broker.publish(retry.body, TOPIC, headers={ATTEMPT: "3", ORIGIN: TOPIC})
    [dead] = outcome.messages[f"{TOPIC}.dlq"]
    assert dead.headers[ATTEMPT] == "3"
    assert "HTTP Error 503" in dead.headers[ERROR]


async def test_log_lines_while_handling_name_the_media_and_chunk() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s%(about)s: %(message)s"))
    handler.addFilter(logcontext.AboutFilter())
    logger = logging.getLogger("test.about")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    broker = KafkaBroker()
    delivery = Delivery(broker, CommonSettings(), "transcribe")

    async def work(chunk: AudioChunk) -> None:
        logger.info("in the loop")
        await asyncio.to_thread(logger.info, "in a worker thread")

    @broker.subscriber("t.media.audio", group_id="g")
    async def handle(message: KafkaMessage) -> None:
        await delivery.handle(message, AudioChunk, work)

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

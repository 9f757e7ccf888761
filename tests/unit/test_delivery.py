"""The one place that decides ack, retry, dead letter or fail (a FastStream middleware on each
stage's router), on FastStream's in-memory broker: the shared delivery testcase (run on the
embedded broker too, in tests/integration/test_delivery_policy.py) and what only fits here."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import logcontext
from streamscribe.common.consumer import Stage
from streamscribe.common.errors import MediaError, TransientError
from streamscribe.common.events import AudioChunk, MediaRequested, Reason, encode_event
from streamscribe.common.settings import CommonSettings, RetrySettings, TopicSettings
from tests.delivery_case import DeliveryTestcase, Published

TOPIC = "t.media.requested"


class Spies:
    """In memory a topic is its subscribers: one per outcome topic keeps what it gets."""

    def __init__(self, broker: KafkaBroker, topics: list[str]) -> None:
        self.seen: dict[str, list[Published]] = {}
        for topic in topics:
            broker.subscriber(topic, group_id=f"spy-{topic}")(self._spy(topic))

    def _spy(self, topic: str) -> Callable[[KafkaMessage], Awaitable[None]]:
        async def spy(message: KafkaMessage) -> None:
            self.seen.setdefault(topic, []).append(Published(message.body, dict(message.headers)))

        return spy

    async def records(self, topic: str, at_least: int) -> list[Published]:
        found = self.seen.get(topic, [])
        assert len(found) >= at_least, f"{topic}: {len(found)} records, not {at_least}"
        return list(found)


class TestDeliveryInMemory(DeliveryTestcase):
    """The delivery testcase on FastStream's in-memory broker: a publish returns once every
    handler it reached, retries and dead letters included, has run."""

    def get_broker(self, settings: CommonSettings) -> KafkaBroker:
        return KafkaBroker()

    def patch_broker(self, broker: KafkaBroker) -> AbstractAsyncContextManager[KafkaBroker]:
        return TestKafkaBroker(broker)

    async def create_topics(self, settings: CommonSettings) -> None:
        pass  # in memory, a topic is its subscribers

    def watch(self, broker: KafkaBroker, settings: CommonSettings) -> Spies:
        requested = settings.topics.requested
        topics = [settings.topics.failed, f"{requested}.retry", f"{requested}.dlq"]
        return Spies(broker, topics)

    async def until(self, predicate: Callable[[], object], what: str) -> None:
        # nothing to wait for: what was published has been handled already
        assert predicate(), what


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

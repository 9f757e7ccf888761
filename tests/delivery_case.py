"""The delivery policy's tests, written once (FastStream's own pattern): `DeliveryTestcase` holds
them; a subclass in tests/unit runs them on `TestKafkaBroker`, one in tests/integration on the
session's embedded broker. A subclass says how to get a broker and patch it, create topics, read
what the policy published to a topic, and wait for something the handler saw.

Every test's topics carry a prefix of their own, and its consumer group a name of its own: on the
real broker, nothing one test leaves behind reaches another."""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import pytest
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import AckStatus

from streamscribe.common.consumer import Stage
from streamscribe.common.delivery import ATTEMPT, ERROR, NOT_BEFORE, ORIGIN, STAGE
from streamscribe.common.errors import MediaError, TransientError
from streamscribe.common.events import MediaRequested, Reason
from streamscribe.common.settings import CommonSettings, KafkaSettings, RetrySettings, TopicSettings

MAX_ATTEMPTS = 3
STAGE_NAME = "ingest"


@dataclass(frozen=True)
class Published:
    """One record the policy put on a topic."""

    body: bytes
    headers: dict[str, str]


class Watch(Protocol):
    async def records(self, topic: str, at_least: int) -> list[Published]:
        """Every record on `topic`, once there are `at_least` of them."""


class Harness:
    """A stage on a started broker, its handler's record of what it saw, and a watch on the
    topics its policy publishes to. Not a dataclass: FastStream takes the repr of the
    handler's owner, which a dataclass builds from every field, the later broker's too."""

    broker: KafkaBroker
    watch: Watch

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.handled: list[MediaRequested] = []
        self.messages: list[KafkaMessage] = []
        # per attempt, how many records each outcome topic held when its message was acked
        self.at_ack: dict[str, dict[str, int]] = {}

    @property
    def topic(self) -> str:
        return self.settings.topics.requested

    async def publish(self, body: bytes) -> None:
        # one key, one partition: the stage handles them in the order published
        await self.broker.publish(body, self.topic, key=b"same")

    @property
    def outcome_topics(self) -> dict[str, str]:
        topic = self.topic
        return {
            "failed": self.settings.topics.failed,
            "retry": f"{topic}.retry",
            "dlq": f"{topic}.dlq",
        }

    async def work(self, event: MediaRequested, message: KafkaMessage) -> None:
        self.messages.append(message)
        self._count_outcomes_at_ack(message)
        if "permanent" in event.url:
            raise MediaError(Reason.NOT_FOUND, "gone")
        if "flaky" in event.url:
            raise TransientError("HTTP Error 503")
        self.handled.append(event)

    def _count_outcomes_at_ack(self, message: KafkaMessage) -> None:
        """Wrap the message's ack (the delivery policy's commit): an outcome published before
        the commit is on its topic by then, on either broker."""
        ack = message.ack
        attempt = message.headers.get(ATTEMPT, "1")

        async def counting_ack() -> None:
            topics = self.outcome_topics.items()
            counts = {name: len(await self.watch.records(topic, 0)) for name, topic in topics}
            self.at_ack[attempt] = counts
            await ack()

        message.ack = counting_ack  # type: ignore[method-assign]

    def acked(self, count: int) -> bool:
        """The handler saw `count` messages and each is committed (after its outcome)."""
        return len(self.messages) >= count and all(
            message.committed is AckStatus.ACKED for message in self.messages[:count]
        )


class DeliveryTestcase(ABC):
    """The delivery policy of a stage (`Stage.subscribe`), whatever the broker."""

    timeout = 60.0  # generous: a loaded 2-core machine joins consumer groups slowly

    @abstractmethod
    def get_broker(self, settings: CommonSettings) -> KafkaBroker: ...

    @abstractmethod
    def patch_broker(self, broker: KafkaBroker) -> AbstractAsyncContextManager[KafkaBroker]: ...

    @abstractmethod
    async def create_topics(self, settings: CommonSettings) -> None: ...

    @abstractmethod
    def watch(self, broker: KafkaBroker, settings: CommonSettings) -> Watch:
        """Called before the broker starts: a watch may subscribe to the topics."""

    @abstractmethod
    async def until(self, predicate: Callable[[], object], what: str) -> None: ...

    @pytest.fixture
    def bootstrap_servers(self) -> str:
        return "localhost:9092"  # never dialled in memory; a real broker's subclass overrides it

    @pytest.fixture
    async def harness(self, bootstrap_servers: str) -> AsyncIterator[Harness]:
        settings = CommonSettings(
            kafka=KafkaSettings(bootstrap_servers=bootstrap_servers),
            topics=TopicSettings(prefix=f"dc-{uuid.uuid4().hex[:8]}.", partitions=1),
            # no backoff: a retry is due at once, so the real broker's run stays quick
            retry=RetrySettings(max_attempts=MAX_ATTEMPTS, backoff_seconds=0),
        )
        await self.create_topics(settings)
        harness = Harness(settings)
        broker = self.get_broker(settings)
        stage = Stage(settings, STAGE_NAME)
        stage.subscribe(harness.topic, f"g-{uuid.uuid4().hex}", harness.work)
        broker.include_router(stage.router)  # the retry releaser too
        harness.watch = self.watch(broker, settings)
        async with self.patch_broker(broker) as patched:
            await patched.start()
            harness.broker = patched
            yield harness

    async def test_a_valid_event_reaches_its_handler_as_its_model_and_is_acked(
        self, harness: Harness
    ) -> None:
        await harness.publish(b'{"url": "http://ok"}')
        await self.until(lambda: harness.acked(1), "the event handled and acked")
        [event] = harness.handled
        assert isinstance(event, MediaRequested)
        assert event.url == "http://ok"
        assert harness.at_ack == {"1": {"failed": 0, "retry": 0, "dlq": 0}}
        for topic in harness.outcome_topics.values():
            assert await harness.watch.records(topic, 0) == [], topic

    async def test_a_request_without_a_run_gets_its_records_and_keeps_one_it_names(
        self, harness: Harness
    ) -> None:
        await harness.publish(b'{"url": "http://a"}')
        await harness.publish(b'{"url": "http://a", "run": "1700000000000-x"}')
        await self.until(lambda: len(harness.handled) == 2, "both requests handled")
        runs = [event.run for event in harness.handled]
        assert runs[0] is not None
        assert re.fullmatch(r"\d{13}-p\d+-o\d+", runs[0])
        assert runs[1] == "1700000000000-x"

    async def test_unparseable_event_is_dead_lettered_with_headers(self, harness: Harness) -> None:
        await harness.publish(b"{not json")
        # the next one handled and acked: the one before it has its outcome (same partition)
        await harness.publish(b'{"url": "http://ok"}')
        await self.until(lambda: harness.acked(1), "the next event handled and acked")
        [dead] = await harness.watch.records(f"{harness.topic}.dlq", 1)
        assert dead.body == b"{not json"
        assert dead.headers[STAGE] == STAGE_NAME
        assert dead.headers[ORIGIN] == harness.topic
        assert "InvalidEventError" in dead.headers[ERROR]
        assert await harness.watch.records(harness.settings.topics.failed, 0) == []

    async def test_invalid_event_naming_a_media_also_fails_it(self, harness: Harness) -> None:
        await harness.publish(b'{"url": "http://x", "language": 5}')
        # the media fails after its dead letter: both are there once it is
        [failed] = await harness.watch.records(harness.settings.topics.failed, 1)
        assert json.loads(failed.body)["reason"] == "invalid_event"
        assert len(await harness.watch.records(f"{harness.topic}.dlq", 1)) == 1
        assert harness.messages == []  # the handler never saw it

    async def test_permanent_error_ends_in_media_failed_before_the_ack(
        self, harness: Harness
    ) -> None:
        await harness.publish(b'{"url": "http://permanent", "media_id": "m1"}')
        await self.until(lambda: harness.acked(1), "the failing event acked")
        # acked only after its outcome: the outcome was on its topic before the commit
        assert harness.at_ack == {"1": {"failed": 1, "retry": 0, "dlq": 0}}
        [failed] = await harness.watch.records(harness.settings.topics.failed, 0)
        body = json.loads(failed.body)
        assert (body["media_id"], body["reason"], body["stage"]) == ("m1", "not_found", STAGE_NAME)
        assert await harness.watch.records(f"{harness.topic}.retry", 0) == []

    async def test_transient_error_is_retried_then_dead_lettered(self, harness: Harness) -> None:
        await harness.publish(b'{"url": "http://flaky"}')
        await self.until(lambda: harness.acked(MAX_ATTEMPTS), "every attempt acked")
        # the releaser put each retry back on the topic: the handler saw every attempt
        attempts = [message.headers.get(ATTEMPT, "1") for message in harness.messages]
        assert attempts == ["1", "2", "3"]
        # each attempt acked after its outcome (in memory, the later attempts run inside the
        # earlier ones' retry publish: counts at an ack can only be higher)
        assert all(harness.at_ack[str(n)]["retry"] >= n for n in range(1, MAX_ATTEMPTS))
        assert harness.at_ack[str(MAX_ATTEMPTS)]["dlq"] == 1
        retries = await harness.watch.records(f"{harness.topic}.retry", 0)
        assert [retry.headers[ATTEMPT] for retry in retries] == ["2", "3"]
        assert all(float(retry.headers[NOT_BEFORE]) > 0 for retry in retries)
        assert {retry.headers[ORIGIN] for retry in retries} == {harness.topic}
        [dead] = await harness.watch.records(f"{harness.topic}.dlq", 0)
        assert dead.headers[ATTEMPT] == str(MAX_ATTEMPTS)
        assert "HTTP Error 503" in dead.headers[ERROR]
        assert harness.handled == []

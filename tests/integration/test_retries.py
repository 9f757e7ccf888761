"""Bounded retries with backoff that do not block the partition, one dead letter with headers,
and `dlq replay`, on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common.consumer import Stage
from streamscribe.common.dead_letters import DeadLetter, list_dead_letters, replay_dead_letters
from streamscribe.common.delivery import ATTEMPT
from streamscribe.common.errors import TransientError
from streamscribe.common.events import MediaRequested
from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.settings import CommonSettings, KafkaSettings, RetrySettings, TopicSettings
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3
BACKOFF = 0.5


async def test_failing_message_is_retried_dead_lettered_and_replayed(kafka: str) -> None:
    settings = CommonSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka),
        topics=TopicSettings(prefix=f"rt-{uuid.uuid4().hex[:8]}.", partitions=1),
        retry=RetrySettings(max_attempts=MAX_ATTEMPTS, backoff_seconds=BACKOFF),
    )
    await ensure_topics(settings.kafka, settings.topics)
    broker = make_broker(settings.kafka, "retry-test", 5.0)
    stage = Stage(settings, "ingest")
    attempts: list[tuple[str, float]] = []
    done: dict[str, float] = {}
    healed = asyncio.Event()

    async def work(event: MediaRequested, message: KafkaMessage) -> None:
        if event.url.endswith("poison"):
            attempts.append((message.headers.get(ATTEMPT, "1"), time.monotonic()))
            if not healed.is_set():
                raise TransientError("HTTP Error 503: upstream down")
        done[event.url] = time.monotonic()

    stage.subscribe(settings.topics.requested, f"g-{uuid.uuid4().hex}", work)
    broker.include_router(stage.router)
    async with broker:
        await broker.start()
        topic = settings.topics.requested
        await broker.publish(b'{"url": "http://e.com/poison"}', topic, key=b"same")
        for i in range(3):
            await broker.publish(f'{{"url": "http://e.com/ok{i}"}}'.encode(), topic, key=b"same")

        await eventually(lambda: len(done) == 3, 60, "the healthy messages")
        letters: list[DeadLetter] = []

        async def dead_lettered() -> None:
            while not letters:
                letters.extend(await list_dead_letters(settings, "media.requested"))

        await asyncio.wait_for(dead_lettered(), 60)
        [letter] = letters
        assert [a for a, _ in attempts] == ["1", "2", "3"]
        # the partition moved on while the poison message waited out its backoff
        assert max(done.values()) < attempts[1][1]
        assert attempts[1][1] - attempts[0][1] >= BACKOFF * 0.5
        assert attempts[2][1] - attempts[1][1] >= BACKOFF
        assert letter.headers["streamscribe-attempt"] == str(MAX_ATTEMPTS)
        assert letter.headers["streamscribe-stage"] == "ingest"
        assert "HTTP Error 503" in letter.headers["streamscribe-error"]
        assert letter.headers["streamscribe-origin-topic"] == topic

        healed.set()
        assert await replay_dead_letters(settings, "media.requested") == 1
        await eventually(lambda: "http://e.com/poison" in done, 60, "the replayed message")
        assert attempts[-1][0] == "1"  # a replay starts its attempts afresh
        assert await replay_dead_letters(settings, "media.requested") == 0

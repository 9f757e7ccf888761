"""Dead letters: list them and put them back on their topic (`streamscribe dlq list|replay
TOPIC`, and the API's `/dead-letters/{topic}`, scope admin).

Replay consumes the dead-letter topic in its own consumer group and commits after each
re-publish, so a dead letter is replayed once, however often `replay` runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamscribe.common.delivery import ATTEMPT, ERROR, ORIGIN, STAGE, dead_letter_topic
from streamscribe.common.errors import ConfigError
from streamscribe.common.kafka import client_kwargs, connected
from streamscribe.common.settings import TOPIC_BASES, CommonSettings

REPLAY_GROUP = "streamscribe-dlq-replay"
DROPPED_ON_REPLAY = {ATTEMPT, ERROR, STAGE}  # a replayed message starts its attempts afresh


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    partition: int
    key: bytes | None
    headers: dict[str, str]
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key.decode(errors="replace") if self.key else None,
            "stage": self.headers.get(STAGE),
            "attempts": self.headers.get(ATTEMPT),
            "error": self.headers.get(ERROR),
            "origin": self.headers.get(ORIGIN),
            "body": self.body[:500].decode(errors="replace"),
        }


def topic_names(settings: CommonSettings, topic: str) -> tuple[str, str]:
    """(origin topic, dead-letter topic) for a base name (`media.requested`) or a full name;
    a `ConfigError` for a topic that is not the pipeline's (a typo must not list nothing)."""
    origin = topic.removesuffix(".dlq")
    prefix = settings.topics.prefix
    base = origin.removeprefix(prefix) if prefix else origin
    if base.removesuffix(".retry") not in TOPIC_BASES:
        raise ConfigError(
            f"unknown topic {topic!r}: dead letters belong to {', '.join(TOPIC_BASES)} "
            "(or their .retry twins)"
        )
    return settings.topics.name(base), dead_letter_topic(settings.topics.name(base))


def dlq_consumer(settings: CommonSettings, topic: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        **client_kwargs(settings.kafka),
        group_id=group,
        client_id=f"{settings.kafka.client_id}-dlq",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def drain(consumer: AIOKafkaConsumer) -> list[Any]:
    """Every record from the consumer's position to the end offsets as of now."""
    async with asyncio.timeout(60):
        while not consumer.assignment():  # the coordinator assigns in the background
            await asyncio.sleep(0.1)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(list(consumer.assignment()))
    records: list[Any] = []
    for tp, end in ends.items():
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            records += batch.get(tp, [])
    return records


def letter_of(record: Any) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    return DeadLetter(record.offset, record.partition, record.key, headers, record.value or b"")


async def list_dead_letters(settings: CommonSettings, topic: str) -> list[DeadLetter]:
    _, dlq = topic_names(settings, topic)
    consumer = dlq_consumer(settings, dlq, None)
    await consumer.start()
    try:
        return [letter_of(record) for record in await drain(consumer)]
    finally:
        await consumer.stop()


async def replay_dead_letters(settings: CommonSettings, topic: str) -> int:
    """Re-publish every dead letter not replayed before; return how many."""
    origin, dlq = topic_names(settings, topic)
    consumer = dlq_consumer(settings, dlq, settings.topics.name(REPLAY_GROUP))
    await consumer.start()
    try:
        async with connected(settings.kafka, "dlq") as broker:
            records = await drain(consumer)
            for record in records:
                letter = letter_of(record)
                headers = {k: v for k, v in letter.headers.items() if k not in DROPPED_ON_REPLAY}
                target = letter.headers.get(ORIGIN, origin)
                await broker.publish(letter.body, target, key=letter.key, headers=headers)
                tp = TopicPartition(dlq, record.partition)
                await consumer.commit({tp: record.offset + 1})
        return len(records)
    finally:
        await consumer.stop()

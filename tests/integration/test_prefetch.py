"""The transcribe consumer's prefetch is bounded, and a chunk larger than the bound still comes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamscribe.transcribe.handlers import AUDIO_FETCH_BYTES, router
from streamscribe.transcribe.settings import TranscribeSettings

pytestmark = pytest.mark.integration


def test_the_audio_subscriber_prefetches_little() -> None:
    settings = TranscribeSettings()
    subscribers = router(settings).subscribers
    [audio] = [s for s in subscribers if s.topic_names == [settings.topics.audio]]
    fetch = audio._connection_args  # what FastStream hands aiokafka's consumer
    assert fetch["max_partition_fetch_bytes"] == fetch["fetch_max_bytes"] == AUDIO_FETCH_BYTES
    assert AUDIO_FETCH_BYTES <= 2**20  # aiokafka's defaults: 1 MiB a partition, 50 MiB a fetch


async def _round_trip(kafka: str, topic: str, sizes: list[int]) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, max_request_size=4 * 2**20)
    await producer.start()
    try:
        for size in sizes:
            await producer.send_and_wait(topic, b"x" * size, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=AUDIO_FETCH_BYTES,
        fetch_max_bytes=AUDIO_FETCH_BYTES,
    )
    await consumer.start()
    try:
        received: list[int] = []
        async with asyncio.timeout(60):
            while len(received) < len(sizes):
                received.append(len((await consumer.getone()).value or b""))
        return received
    finally:
        await consumer.stop()


def test_a_chunk_larger_than_the_bound_still_comes(kafka: str) -> None:
    sizes = [100_000, 3 * AUDIO_FETCH_BYTES, 50_000]  # a 120 s chunk is about 600 KB
    topic = f"prefetch-{uuid.uuid4().hex[:8]}"
    assert asyncio.run(_round_trip(kafka, topic, sizes)) == sizes

"""The memory guard on the real broker: it pauses and resumes consumption near the ceiling with
no message lost, repeated or rebalanced, and a worker that stays above the ceiling exits for a
restart after committing the message that took it there."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from prometheus_client import REGISTRY

from streamscribe.common.kafka import make_broker
from streamscribe.common.memory import EXIT_RECYCLE, Marks, MemoryGuard, rss
from streamscribe.common.settings import KafkaSettings, MemorySettings
from tests.integration.conftest import eventually
from tests.integration.leaky_worker import touched

pytestmark = pytest.mark.integration

MiB = 2**20
MESSAGES = 60
HOG_AT = 10  # the message whose handler holds `HOG` bytes
HOG = 256 * MiB
ROOT = Path(__file__).resolve().parents[2]


async def _create_topics(kafka: str, partitions: int, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def _publish(kafka: str, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for key, value in zip(keys, values, strict=True):
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.count = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.count += 1


def _paused_gauge() -> float | None:
    return REGISTRY.get_sample_value("streamscribe_memory_paused")


def _lag(topic: str) -> float | None:
    return REGISTRY.get_sample_value("streamscribe_consumer_lag_messages", {"topic": topic})


async def test_guard_pauses_and_resumes_without_loss_repeat_or_rebalance(kafka: str) -> None:
    topic = f"mg-{uuid.uuid4().hex[:8]}"
    await _create_topics(kafka, 3, topic)
    await _publish(
        kafka,
        topic,
        [str(i).encode() for i in range(MESSAGES)],
        [f"k{i}".encode() for i in range(MESSAGES)],
    )
    broker = make_broker(KafkaSettings(bootstrap_servers=kafka), "guard-test", 5.0)
    baseline = rss()
    pause, resume = baseline + HOG // 2, baseline + HOG // 4
    marks = Marks(ceiling=baseline + 4 * HOG, pause=pause, resume=resume)
    guard = MemoryGuard(broker, MemorySettings(sample_seconds=0.05), marks)
    assignments = _Assignments()
    handled: list[tuple[int, int, int, bool]] = []  # partition, offset, value, paused on entry
    hog: list[bytearray] = []
    progress, hog_handled = asyncio.Event(), asyncio.Event()

    subscriber = broker.subscriber(
        topic,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        listener=assignments,
    )

    @subscriber
    async def handle(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        value = int(message.body)
        handled.append((record.partition, record.offset, value, guard.paused))
        if value == HOG_AT:
            hog.append(touched(HOG))
            # hold the message in hand until the guard pauses, so the rest must wait for it
            await eventually(lambda: guard.paused, 10, "the pause")
        await message.ack()
        progress.set()
        if value == HOG_AT:
            hog_handled.set()

    async with broker:
        await broker.start()
        await guard.start()
        try:
            await asyncio.wait_for(hog_handled.wait(), 60)
            paused_rss = rss()
            assert _paused_gauge() == 1
            assigned = set(subscriber.consumer.assignment())  # type: ignore[union-attr]
            progress.clear()
            try:  # nothing is consumed while paused
                await asyncio.wait_for(progress.wait(), 1.0)
                raise AssertionError("a message was handled while paused")
            except TimeoutError:
                pass
            count_while_paused = len(handled)
            hog.clear()
            await eventually(lambda: not guard.paused, 10, "the resume")
            resumed_rss = rss()
            assert _paused_gauge() == 0
            await eventually(lambda: len(handled) == MESSAGES, 60, "every message")
            await eventually(lambda: _lag(topic) == 0, 10, "the lag to reach 0")
            assert subscriber.consumer.assignment() == assigned  # type: ignore[union-attr]
        finally:
            await guard.stop()

    print(  # shown with -s: the numbers behind the marks
        f"\nbaseline {baseline / MiB:.0f} MiB, pause mark {pause / MiB:.0f} MiB "
        f"(RSS {paused_rss / MiB:.0f}), resume mark {resume / MiB:.0f} MiB "
        f"(RSS {resumed_rss / MiB:.0f}); {count_while_paused} of {MESSAGES} handled before"
    )
    assert sorted(value for _, _, value, _ in handled) == list(range(MESSAGES))
    for partition in {p for p, _, _, _ in handled}:
        offsets = [offset for p, offset, _, _ in handled if p == partition]
        assert offsets == list(range(len(offsets))), f"partition {partition} out of order"
    assert not any(paused for _, _, _, paused in handled)
    assert count_while_paused < MESSAGES, "the pause held nothing back"
    assert assignments.count == 1, "the consumer rebalanced"


async def test_worker_above_the_ceiling_exits_for_restart_after_commit(kafka: str) -> None:
    topic = f"mg-leak-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex}"
    await _create_topics(kafka, 1, topic, f"{topic}.retry")
    urls = ["http://e.com/ok1", "http://e.com/leak", "http://e.com/ok2"]
    await _publish(kafka, topic, [f'{{"url": "{url}"}}'.encode() for url in urls], [b"k"] * 3)

    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.leaky_worker",
        kafka,
        topic,
        group,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(worker.communicate(), 120)
    finally:
        if worker.returncode is None:
            worker.kill()
    assert worker.returncode == EXIT_RECYCLE, stderr.decode()[-3000:]
    handled = [line for line in stdout.decode().splitlines() if line.startswith("handling")]
    assert handled == ["handling http://e.com/ok1", "handling http://e.com/leak"]
    assert f"exiting with {EXIT_RECYCLE}" in stderr.decode()

    # assigned, not subscribed: it reads the group's committed offset without waiting for the
    # broker to expire the dead worker's membership
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        assert await consumer.committed(partition) == 2
        record = await asyncio.wait_for(consumer.getone(), 30)
        assert (record.offset, b"ok2" in record.value) == (2, True)
    finally:
        await consumer.stop()

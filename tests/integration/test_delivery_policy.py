"""The delivery testcase (tests/delivery_case.py, run in memory in tests/unit/test_delivery.py)
on the session's embedded broker: real consumer groups, real commits, the retry releaser
consuming `<topic>.retry`, and the outcome topics read back from the broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.settings import CommonSettings
from tests.delivery_case import DeliveryTestcase, Published
from tests.integration.conftest import eventually, read_topic, wait_for

pytestmark = pytest.mark.integration


class TopicReader:
    """Reads an outcome topic from the broker, polling until it holds what a test waits for."""

    def __init__(self, bootstrap_servers: str, timeout: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout

    async def records(self, topic: str, at_least: int) -> list[Published]:
        # in a thread: the helpers block, and the broker's consumers share this loop
        return await asyncio.to_thread(self._wait, topic, at_least)

    def _wait(self, topic: str, at_least: int) -> list[Published]:
        def enough() -> list[Published] | None:
            found = [_published(record) for record in read_topic(self.bootstrap_servers, topic)]
            return found if len(found) >= at_least else None

        if at_least == 0:  # nothing to wait for, and an empty list is an answer
            return enough() or []
        found: list[Published] = wait_for(enough, self.timeout, f"{at_least} records on {topic}")
        return found


def _published(record: ConsumerRecord[bytes, bytes]) -> Published:
    headers = {key: value.decode() for key, value in record.headers}
    return Published(record.value or b"", headers)


class TestDeliveryOnTheEmbeddedBroker(DeliveryTestcase):
    @pytest.fixture
    def bootstrap_servers(self, kafka: str) -> str:
        return kafka  # the session's one broker; each test has its own topics and groups

    def get_broker(self, settings: CommonSettings) -> KafkaBroker:
        return make_broker(settings.kafka, "delivery-test", grace_seconds=5.0)

    def patch_broker(self, broker: KafkaBroker) -> AbstractAsyncContextManager[KafkaBroker]:
        return broker  # the real one, unpatched: connected for the block, stopped after

    async def create_topics(self, settings: CommonSettings) -> None:
        # before any consumer subscribes: a group on a missing topic would wait for metadata
        await ensure_topics(settings.kafka, settings.topics)

    def watch(self, broker: KafkaBroker, settings: CommonSettings) -> TopicReader:
        return TopicReader(settings.kafka.bootstrap_servers, self.timeout)

    async def until(self, predicate: Callable[[], object], what: str) -> None:
        await eventually(predicate, self.timeout, what)

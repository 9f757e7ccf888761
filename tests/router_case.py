"""A service's real router and resources on FastStream's in-memory broker, opened as the app
factory opens them, with a spy on each outcome topic: what the router published, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common.service import Service, open_resources


@dataclass
class InMemory:
    broker: KafkaBroker
    """The patched broker: publish to it; a publish returns once every handler it reached ran."""
    seen: dict[str, list[KafkaMessage]]
    """Topic -> the messages published to it, of the topics spied on."""


@asynccontextmanager
async def in_memory(service: Service, spied: Iterable[str]) -> AsyncIterator[InMemory]:
    broker = KafkaBroker()
    broker.include_router(service.router)
    seen: dict[str, list[KafkaMessage]] = {}
    for topic in spied:
        broker.subscriber(topic, group_id=f"spy-{topic}")(_spy(seen, topic))
    async with AsyncExitStack() as stack:
        await open_resources(stack, broker, service)
        yield InMemory(await stack.enter_async_context(TestKafkaBroker(broker)), seen)


def _spy(seen: dict[str, list[KafkaMessage]], topic: str) -> Callable[..., Awaitable[None]]:
    async def spy(message: KafkaMessage) -> None:
        seen.setdefault(topic, []).append(message)

    return spy

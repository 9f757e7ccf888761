"""How every service subscribes: a consumer group, manual commits after the outcome, starting
from the earliest offset for a new group, handlers that take their event model, and a twin
consumer that releases due retries.

A stage's subscribers live on one FastStream router (`Stage.router`): those it owns go through
its `Delivery` middleware, those that follow another stage's topic through `Follow`, and its
retry releasers through neither (they move raw bytes, whatever they hold)."""

# No `from __future__ import annotations`: FastStream resolves a handler's annotations when
# they are strings against the locals of every frame on the stack, where a name of another
# module (a `KafkaBroker` that is not the context annotation) can shadow this one's.

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy

from streamscribe.common.delivery import (
    Delivery,
    Follow,
    event_decoder,
    release_retry,
    retry_topic,
)
from streamscribe.common.events import Event
from streamscribe.common.settings import CommonSettings

Handler = Callable[..., Awaitable[None]]
"""An async function whose first parameter is an event model; FastStream's context fills the
others (`Context()`)."""


class Stage:
    """The subscribers of one stage, on one router to include in a broker."""

    def __init__(self, settings: CommonSettings, name: str) -> None:
        self.name = name
        self.delivery = Delivery(settings, name)
        self._owned = KafkaRouter(middlewares=[self.delivery])
        self._followed = KafkaRouter(middlewares=[Follow()])
        self.router = KafkaRouter(routers=[self._owned, self._followed])

    def subscribe(
        self,
        topic: str,
        group_id: str,
        handler: Handler,
        max_poll_interval_ms: int = 300_000,
        fetch_bytes: int | None = None,
    ) -> None:
        """Consume `topic` with `handler` under this stage's delivery policy, and
        `<topic>.retry` with the retry releaser (a topic's retries have one releaser: its
        owner's).

        `fetch_bytes` bounds what the consumer prefetches, per partition and per fetch:
        aiokafka's defaults (1 MiB a partition, 50 MiB a fetch) let a backlog of large messages
        fill memory with records not handled yet. A record larger than the bound still comes,
        alone."""
        options = _options(max_poll_interval_ms, fetch_bytes)
        decoder = event_decoder(_event_model(handler))
        self._owned.subscriber(topic, group_id=group_id, decoder=decoder, **options)(handler)
        self._release_retries(topic, group_id, options)

    def subscribe_batches(
        self,
        topic: str,
        group_id: str,
        handler: Handler,
        max_records: int,
        fetch_bytes: int | None = None,
    ) -> None:
        """Consume `topic` in batches of up to `max_records` records a poll, and `<topic>.retry`
        one by one as `subscribe` does. `handler` takes the batch's message (`KafkaMessage`);
        the delivery middleware sees one record at a time, so the batch subscriber is outside
        it: `handler` runs `self.delivery.settlements(...)` (each record its own outcome under
        this stage's policy) and then `self.delivery.commit(batch)`."""
        options = _options(300_000, fetch_bytes)
        batches = options | {"batch": True, "max_records": max_records}
        self.router.subscriber(topic, group_id=group_id, **batches)(handler)
        self._release_retries(topic, group_id, options)

    def _release_retries(self, topic: str, group_id: str, options: dict[str, Any]) -> None:
        self.router.subscriber(retry_topic(topic), group_id=f"{group_id}-retry", **options)(
            _release
        )

    def follow(self, topic: str, group_id: str, handler: Handler) -> None:
        """Consume a topic another stage owns: its invalid events are the owner's to
        dead-letter, and its retries the owner's to release."""
        decoder = event_decoder(_event_model(handler))
        options = _options(300_000, None)
        self._followed.subscriber(topic, group_id=group_id, decoder=decoder, **options)(handler)


async def _release(message: KafkaMessage, broker: KafkaBroker) -> None:
    await release_retry(broker, message)


def _options(max_poll_interval_ms: int, fetch_bytes: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.MANUAL,
        "max_poll_interval_ms": max_poll_interval_ms,
    }
    if fetch_bytes is not None:
        options["max_partition_fetch_bytes"] = fetch_bytes
        options["fetch_max_bytes"] = fetch_bytes
    return options


def _event_model(handler: Handler) -> type[Event]:
    """The event model a handler takes: the annotation of its first parameter."""
    first = next(iter(inspect.signature(handler, eval_str=True).parameters.values()), None)
    model = first.annotation if first is not None else None
    if not (isinstance(model, type) and issubclass(model, Event)):
        raise TypeError(f"{handler.__qualname__} must take an event model first, not {model}")
    return model

"""How every service subscribes: a consumer group, manual commits after the outcome, starting
from the earliest offset for a new group, and a twin consumer that releases due retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy

from streamscribe.common.delivery import release_retry, retry_topic

Handler = Callable[[KafkaMessage], Awaitable[None]]


def subscribe(
    broker: KafkaBroker,
    topic: str,
    group_id: str,
    handler: Handler,
    max_poll_interval_ms: int = 300_000,
    retries: bool = True,
    fetch_bytes: int | None = None,
    max_records: int | None = None,
) -> None:
    """Consume `topic` with `handler`, and `<topic>.retry` with the retry releaser (unless
    `retries` is off: a topic's retries have one releaser, its owning stage's).

    `fetch_bytes` bounds what the consumer prefetches, per partition and per fetch: aiokafka's
    defaults (1 MiB a partition, 50 MiB a fetch) let a backlog of large messages fill memory
    with records not handled yet. A record larger than the bound still comes, alone.

    `max_records` makes `topic`'s subscriber a batch subscriber: `handler` gets up to that many
    records per poll in one message (its retries stay one by one)."""
    options: dict[str, Any] = {
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.MANUAL,
        "max_poll_interval_ms": max_poll_interval_ms,
    }
    if fetch_bytes is not None:
        options["max_partition_fetch_bytes"] = fetch_bytes
        options["fetch_max_bytes"] = fetch_bytes
    main: dict[str, Any] = options | (
        {"batch": True, "max_records": max_records} if max_records else {}
    )
    broker.subscriber(topic, group_id=group_id, **main)(handler)
    if not retries:
        return

    async def on_retry(message: KafkaMessage) -> None:
        await release_retry(broker, message)

    broker.subscriber(retry_topic(topic), group_id=f"{group_id}-retry", **options)(on_retry)

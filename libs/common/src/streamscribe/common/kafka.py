"""Connections to the broker: the FastStream broker of a service (and of the CLI, to publish),
and raw aiokafka clients (admin, the CLI's dead-letter reader) configured from the same
settings."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from streamscribe.common.settings import KafkaSettings, TopicSettings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def _ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if not kafka.security_protocol.endswith("SSL"):
        return None
    return ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)


def security(kafka: KafkaSettings) -> BaseSecurity | None:
    """FastStream's security object for these settings (None for PLAINTEXT)."""
    context = _ssl_context(kafka)
    if kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password:
        cls = _SASL[kafka.sasl_mechanism]
        secret = kafka.sasl_password.get_secret_value()
        return cls(kafka.sasl_username, secret, ssl_context=context, use_ssl=context is not None)
    return BaseSecurity(ssl_context=context) if context else None


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for raw aiokafka clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if context := _ssl_context(kafka):
        kwargs["ssl_context"] = context
    if kafka.sasl_mechanism and kafka.sasl_password:
        kwargs |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password.get_secret_value(),
        }
    return kwargs


def producer_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Durable publishing: wait for every in-sync replica."""
    return {
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "max_request_size": kafka.max_request_bytes,
    }


def make_broker(kafka: KafkaSettings, client_id: str, grace_seconds: float) -> KafkaBroker:
    """A service's broker; on shutdown it lets the message in hand finish for `grace_seconds`."""
    return KafkaBroker(
        kafka.bootstrap_servers,
        client_id=f"{kafka.client_id}-{client_id}",
        graceful_timeout=grace_seconds,
        security=security(kafka),
        **producer_kwargs(kafka),
    )


@contextlib.asynccontextmanager
async def connected(kafka: KafkaSettings, client_id: str) -> AsyncIterator[KafkaBroker]:
    """A broker to publish with (no subscribers), connected for the block: the CLI's and `up`'s
    one way to publish, the same `publish_event` the services use."""
    broker = make_broker(kafka, client_id, grace_seconds=5.0)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create every pipeline topic that does not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(client_id=f"{kafka.client_id}-admin", **client_kwargs(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, topics.partitions, topics.replication_factor)
            for name in topics.all()
            if name not in existing
        ]
        if wanted:
            # another worker may win the race; the topic is there either way
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        return [topic.name for topic in wanted]
    finally:
        await admin.close()

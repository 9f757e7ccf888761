"""The embed service: model and store opened before the consumer joins its group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream

from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.service import Readiness, build_app
from streamscribe.embed.embedder import Embedder
from streamscribe.embed.handlers import Resources, register
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store import open_store


def create_app(settings: EmbedSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "embed", settings.shutdown_grace_seconds)
    resources = Resources()
    register(broker, settings, resources)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.embedder = await asyncio.to_thread(Embedder, settings.embed)
        resources.store = open_store(settings)
        await ensure_topics(settings.kafka, settings.topics)
        try:
            yield
        finally:
            resources.store.close()

    return build_app(broker, lifespan, Readiness())

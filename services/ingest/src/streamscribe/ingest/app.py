"""The ingest service: temp root swept before the consumer joins its group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream

from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.service import Readiness, build_app
from streamscribe.common.tempfiles import TempRoot
from streamscribe.ingest.handlers import Resources, register
from streamscribe.ingest.settings import IngestSettings


def create_app(settings: IngestSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "ingest", settings.shutdown_grace_seconds)
    resources = Resources()
    register(broker, settings, resources)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.temp = TempRoot(settings.temp_root, "ingest")
        resources.temp.sweep()
        await ensure_topics(settings.kafka, settings.topics)
        yield

    return build_app(broker, lifespan, Readiness())

"""The transcribe service: model loaded once, before the consumer joins its group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream

from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.service import Readiness, build_app
from streamscribe.transcribe.handlers import Resources, register
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber


def create_app(settings: TranscribeSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "transcribe", settings.shutdown_grace_seconds)
    resources = Resources()
    register(broker, settings, resources)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.transcriber = await asyncio.to_thread(Transcriber, settings.transcribe)
        await ensure_topics(settings.kafka, settings.topics)
        yield

    return build_app(broker, lifespan, Readiness())

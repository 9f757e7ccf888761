"""The ingest service: temp root swept before the consumer joins its group; chunks are no
longer than what fits between its RSS at start and the memory pause mark."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.events import AudioChunk, Event, MediaFailed, Transcript
from streamscribe.common.memory import admitted, resolve_marks, rss
from streamscribe.common.service import Service, build_app
from streamscribe.common.tempfiles import TempRoot
from streamscribe.ingest.chunk_source import chunk_limits
from streamscribe.ingest.handlers import STAGE, Resources, router
from streamscribe.ingest.settings import IngestSettings

# One chunk is decoded into a buffer of 16 kHz float32 samples (62.5 KiB per second), then cut,
# resampled and encoded: about four copies at once. An estimate; the chunker holds no more.
BYTES_PER_CHUNK_SECOND = 256 * 2**10


def admitted_chunk_seconds(settings: IngestSettings) -> int:
    """The longest chunk that fits under the pause mark; at least the shortest chunk."""
    section = settings.ingest
    return admitted(
        resolve_marks(settings.memory).pause,
        rss(),
        BYTES_PER_CHUNK_SECOND,
        math.ceil(section.chunk_max_seconds),
        least=math.ceil(section.chunk_min_seconds),
    )


def service(settings: IngestSettings) -> Service:
    """Ingest's subscribers, and the resources that prepare them."""

    @asynccontextmanager
    async def resources(broker: KafkaBroker) -> AsyncIterator[Mapping[str, object]]:
        temp = TempRoot(settings.temp_root, "ingest")
        temp.sweep()
        chunks = chunk_limits(settings.ingest, admitted_chunk_seconds(settings))
        yield {STAGE: Resources(temp, chunks)}

    publishes: dict[str, type[Event]] = {
        settings.topics.audio: AudioChunk,
        settings.topics.transcript: Transcript,  # a media's own captions
        settings.topics.failed: MediaFailed,
    }
    return Service(STAGE, router(settings), resources, publishes)


def create_app(settings: IngestSettings) -> AsgiFastStream:
    return build_app(settings, STAGE, service(settings))

"""`streamscribe submit`: a URL becomes a `media.requested` event; a local file is chunked here,
with ingest's own chunker, and its chunks published (no shared disk needed)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka import AIOKafkaProducer

from streamscribe.common.events import AudioChunk, MediaRequested, encode_event, new_run
from streamscribe.common.kafka import client_kwargs, producer_kwargs
from streamscribe.ingest.handlers import chunk_limits, decode_limits
from streamscribe.ingest.publisher import MediaRef, audio_key, publish_audio
from streamscribe.ingest.settings import IngestSettings

HEADERS = [("content-type", b"application/json")]


@asynccontextmanager
async def producer(settings: IngestSettings) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        **client_kwargs(settings.kafka),
        **producer_kwargs(settings.kafka),
        client_id=f"{settings.kafka.client_id}-cli",
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def submit_url(
    settings: IngestSettings, url: str, media_id: str | None, language: str | None
) -> tuple[str, str]:
    """Publish the request; return (media id, run)."""
    event = MediaRequested(url=url, media_id=media_id, language=language, run=new_run())
    async with producer(settings) as client:
        await client.send_and_wait(
            settings.topics.requested,
            encode_event(event),
            key=event.resolved_id.encode(),
            headers=HEADERS,
        )
    assert event.run is not None
    return event.resolved_id, event.run


def file_media_id(path: Path) -> str:
    """Same bytes, same id: resubmitting a file overwrites its index entries."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return "f-" + digest.hexdigest()[:20]


async def submit_file(
    settings: IngestSettings, path: Path, media_id: str | None, language: str | None
) -> tuple[str, int, str]:
    """Publish every chunk of a local file; return (media id, chunk count, run)."""
    media = MediaRef(media_id or file_media_id(path), path.resolve().as_uri(), language, new_run())
    async with producer(settings) as client:

        async def send(chunk: AudioChunk) -> None:
            await client.send_and_wait(
                settings.topics.audio, encode_event(chunk), key=audio_key(chunk), headers=HEADERS
            )

        limits = decode_limits(settings.ingest, chunk_limits(settings.ingest))
        count = await publish_audio(path, media, limits, send)
    assert media.run is not None
    return media.media_id, count, media.run

"""`streamscribe submit`: a URL becomes a `media.requested` event; a local file is chunked here,
through ingest's public chunk source, and its chunks published (no shared disk needed). Both
publish with `publish_event`, as the services do."""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamscribe.common.delivery import publish_event
from streamscribe.common.events import AudioChunk, MediaRequested, media_id_for_file, new_run
from streamscribe.common.kafka import connected
from streamscribe.ingest.chunk_source import MediaRef, audio_key, publish_file
from streamscribe.ingest.settings import IngestSettings


async def submit_url(
    settings: IngestSettings, url: str, media_id: str | None, language: str | None
) -> tuple[str, str]:
    """Publish the request; return (media id, run)."""
    event = MediaRequested(url=url, media_id=media_id, language=language, run=new_run())
    async with connected(settings.kafka, "cli") as broker:
        await publish_event(broker, settings.topics.requested, event, event.resolved_id.encode())
    assert event.run is not None
    return event.resolved_id, event.run


def file_media_id(path: Path) -> str:
    """Same bytes, same id: resubmitting a file overwrites its index entries."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return media_id_for_file(digest.hexdigest())


async def submit_file(
    settings: IngestSettings, path: Path, media_id: str | None, language: str | None
) -> tuple[str, int, str]:
    """Publish every chunk of a local file; return (media id, chunk count, run)."""
    media = MediaRef(media_id or file_media_id(path), path.resolve().as_uri(), language, new_run())
    async with connected(settings.kafka, "cli") as broker:

        async def send(chunk: AudioChunk) -> None:
            await publish_event(broker, settings.topics.audio, chunk, audio_key(chunk))

        count = await publish_file(path, media, settings.ingest, send)
    assert media.run is not None
    return media.media_id, count, media.run

"""media.requested -> media.audio: check the URL, download into a job dir, chunk, publish."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import Delivery, publish_event
from streamscribe.common.events import AudioChunk, MediaRequested
from streamscribe.common.tempfiles import TempRoot
from streamscribe.ingest.chunk_source import decode_limits
from streamscribe.ingest.chunker import ChunkLimits
from streamscribe.ingest.downloader import DownloadLimits, download
from streamscribe.ingest.publisher import MediaRef, audio_key, publish_audio
from streamscribe.ingest.settings import IngestSection, IngestSettings
from streamscribe.ingest.urlguard import UrlPolicy, check_url

STAGE = "ingest"


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    temp: TempRoot
    chunks: ChunkLimits


def url_policy(section: IngestSection) -> UrlPolicy:
    return UrlPolicy(
        allow_private_networks=section.allow_private_networks,
        allowed_hosts=frozenset(section.allowed_hosts),
    )


def register(broker: KafkaBroker, settings: IngestSettings, resources: Resources) -> None:
    delivery = Delivery(broker, settings, STAGE)
    section = settings.ingest
    policy = url_policy(section)
    limits = DownloadLimits(
        max_bytes=section.max_download_bytes,
        max_probe_bytes=section.max_probe_bytes,
        max_duration_seconds=section.max_duration_seconds,
        max_seconds=section.max_download_seconds,
        socket_timeout_seconds=section.socket_timeout_seconds,
    )

    async def send(chunk: AudioChunk) -> None:
        await publish_event(broker, settings.topics.audio, chunk, audio_key(chunk))
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(chunk.end - chunk.start)

    async def ingest(request: MediaRequested) -> None:
        media = MediaRef(request.resolved_id, request.url, request.language, request.run)
        await asyncio.to_thread(check_url, request.url, policy)
        await resources.temp.wait_for_room(section.temp_quota_bytes)
        with resources.temp.job(media.media_id) as job_dir:
            path = await asyncio.to_thread(download, request.url, job_dir, limits, policy)
            resources.temp.report()
            await publish_audio(path, media, decode_limits(section, resources.chunks), send)

    async def on_requested(message: KafkaMessage) -> None:
        await delivery.handle(message, MediaRequested, ingest)

    group = section.group(STAGE)
    subscribe(broker, settings.topics.requested, group, on_requested, section.max_poll_interval_ms)

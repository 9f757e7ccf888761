"""media.requested -> media.audio: check the URL, download into a job dir, chunk, publish."""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import Delivery, publish_event
from streamscribe.common.drain import draining
from streamscribe.common.errors import MediaError
from streamscribe.common.events import (
    AudioChunk,
    MediaRequested,
    Transcript,
    TranscriptSource,
)
from streamscribe.common.tempfiles import TempRoot
from streamscribe.ingest.captions import CaptionsMode, chunks
from streamscribe.ingest.chunker import ChunkLimits
from streamscribe.ingest.decoder import DecodeLimits
from streamscribe.ingest.downloader import CaptionChoice, Captions, DownloadLimits, download
from streamscribe.ingest.publisher import MediaRef, audio_key, publish_audio
from streamscribe.ingest.settings import IngestSection, IngestSettings
from streamscribe.ingest.urlguard import UrlPolicy, check_url

STAGE = "ingest"

log = logging.getLogger(__name__)


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    temp: TempRoot
    chunks: ChunkLimits


def url_policy(section: IngestSection) -> UrlPolicy:
    return UrlPolicy(
        allow_private_networks=section.allow_private_networks,
        allowed_hosts=frozenset(section.allowed_hosts),
    )


def chunk_limits(section: IngestSection, max_seconds: float | None = None) -> ChunkLimits:
    """The configured chunking, with chunks no longer than `max_seconds` when given."""
    longest = section.chunk_max_seconds
    return ChunkLimits(
        min_seconds=section.chunk_min_seconds,
        max_seconds=longest if max_seconds is None else min(longest, max_seconds),
        max_duration_seconds=section.max_duration_seconds,
        overlap_seconds=section.overlap_seconds,
    )


def decode_limits(section: IngestSection, chunks: ChunkLimits) -> DecodeLimits:
    return DecodeLimits.for_chunks(chunks, section.decoder_memory_bytes)


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

    async def send_captions(found: Captions, media: MediaRef) -> None:
        """The captions as transcript chunks, straight to embed: nothing to transcribe."""
        grouped = chunks(found.cues, section.chunk_max_seconds)
        for seq, (start, end, segments) in enumerate(grouped):
            final = seq == len(grouped) - 1
            transcript = Transcript(
                media_id=media.media_id, seq=seq, start=start, end=end, final=final,
                chunk_count=len(grouped) if final else None, source_url=media.source_url,
                language=found.track.language, run=media.run, segments=segments,
                source=TranscriptSource.CAPTIONS,
            )  # fmt: skip
            await publish_event(
                broker, settings.topics.transcript, transcript, media.media_id.encode()
            )
            metrics.CHUNKS.labels(STAGE).inc()

    async def ingest(request: MediaRequested) -> None:
        media = MediaRef(request.resolved_id, request.url, request.language, request.run)
        if draining(settings.data_dir):
            # the ledger holds the request as unfinished: `up` requests it again once the
            # embedded broker has been recycled (common/drain.py)
            log.info("media %s waits: the embedded broker is being recycled", media.media_id)
            return
        captions = CaptionChoice(
            CaptionsMode(request.captions or section.captions),
            request.language or section.captions_language,
            section.automatic_captions,
        )
        await asyncio.to_thread(check_url, request.url, policy)
        await resources.temp.wait_for_room(section.temp_quota_bytes)
        with resources.temp.job(media.media_id) as job_dir:
            try:
                found = await asyncio.to_thread(
                    download, request.url, job_dir, limits, policy, captions
                )
                resources.temp.report()
                if isinstance(found, Captions):
                    await send_captions(found, media)
                    return
                await publish_audio(found, media, decode_limits(section, resources.chunks), send)
            except MediaError as exc:
                # a reason is for users: the job's directory is nothing of theirs
                raise MediaError(exc.reason, exc.detail.replace(str(job_dir), "…")) from exc

    async def on_requested(message: KafkaMessage) -> None:
        await delivery.handle(message, MediaRequested, ingest)

    group = section.group_id or "streamscribe-ingest"
    subscribe(broker, settings.topics.requested, group, on_requested, section.max_poll_interval_ms)

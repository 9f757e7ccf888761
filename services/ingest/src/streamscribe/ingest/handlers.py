"""media.requested -> media.audio: check the URL, download into a job dir, chunk, publish."""

# Handlers' annotations are objects, not strings (why: `common/consumer.py`).

import asyncio
import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from streamscribe.common import metrics
from streamscribe.common.consumer import Stage
from streamscribe.common.delivery import publish_event
from streamscribe.common.drain import draining
from streamscribe.common.errors import MediaError
from streamscribe.common.events import (
    AudioChunk,
    MediaMetadata,
    MediaRequested,
    Transcript,
    TranscriptSource,
)
from streamscribe.common.tempfiles import TempRoot
from streamscribe.ingest.captions import CaptionsMode, chunks
from streamscribe.ingest.chunk_source import decode_limits
from streamscribe.ingest.chunker import ChunkLimits
from streamscribe.ingest.downloader import CaptionChoice, Captions, DownloadLimits, download
from streamscribe.ingest.publisher import MediaRef, audio_key, publish_audio
from streamscribe.ingest.settings import IngestSettings
from streamscribe.ingest.urlguard import check_url, url_policy

STAGE = "ingest"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What the handler uses: opened by the app (`app.py`) before the consumer starts, and
    given to the handler from FastStream's context, under the stage's name."""

    temp: TempRoot
    chunks: ChunkLimits


Held = Annotated[Resources, Context(STAGE)]
"""A handler parameter: this stage's resources, from FastStream's context."""


async def send_chunk(broker: KafkaBroker, topic: str, chunk: AudioChunk) -> None:
    await publish_event(broker, topic, chunk, audio_key(chunk))
    metrics.CHUNKS.labels(STAGE).inc()
    metrics.AUDIO_SECONDS.labels(STAGE).inc(chunk.end - chunk.start)


def router(settings: IngestSettings) -> KafkaRouter:
    """Ingest's subscribers."""
    stage = Stage(settings, STAGE)
    section = settings.ingest
    policy = url_policy(section)
    limits = DownloadLimits(
        max_bytes=section.max_download_bytes,
        max_probe_bytes=section.max_probe_bytes,
        max_duration_seconds=section.max_duration_seconds,
        max_seconds=section.max_download_seconds,
        socket_timeout_seconds=section.socket_timeout_seconds,
    )

    async def send_captions(broker: KafkaBroker, found: Captions, media: MediaRef) -> None:
        """The captions as transcript chunks, straight to embed: nothing to transcribe."""
        grouped = chunks(found.cues, section.chunk_max_seconds)
        for seq, (start, end, segments) in enumerate(grouped):
            final = seq == len(grouped) - 1
            transcript = Transcript(
                media_id=media.media_id, seq=seq, start=start, end=end, final=final,
                chunk_count=len(grouped) if final else None, source_url=media.source_url,
                language=found.track.language, run=media.run, segments=segments,
                source=TranscriptSource.CAPTIONS, metadata=media.metadata,
            )  # fmt: skip
            await publish_event(
                broker, settings.topics.transcript, transcript, media.media_id.encode()
            )
            metrics.CHUNKS.labels(STAGE).inc()

    async def ingest(request: MediaRequested, broker: KafkaBroker, resources: Held) -> None:
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
        probed: list[MediaMetadata] = []
        with resources.temp.job(media.media_id) as job_dir:
            try:
                found = await asyncio.to_thread(
                    download, request.url, job_dir, limits, policy, captions, probed.append
                )
                # what the request says wins over the site: a client may name the media
                site = probed[0] if probed else None
                known = request.metadata.over(site) if request.metadata else site
                media = replace(media, metadata=known)
                resources.temp.report()
                if isinstance(found, Captions):
                    await send_captions(broker, found, media)
                    return
                send = partial(send_chunk, broker, settings.topics.audio)
                await publish_audio(found, media, decode_limits(section, resources.chunks), send)
            except MediaError as exc:
                # a reason is for users: the job's directory is nothing of theirs
                raise MediaError(exc.reason, exc.detail.replace(str(job_dir), "…")) from exc

    group = section.group(STAGE, settings.topics)
    stage.subscribe(settings.topics.requested, group, ingest, section.max_poll_interval_ms)
    return stage.router

"""media.audio -> media.transcript: decode one chunk, transcribe it off the event loop."""

from __future__ import annotations

import asyncio
from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.audio import SAMPLE_RATE, decode_chunk
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import Delivery, publish_event
from streamscribe.common.errors import MediaError
from streamscribe.common.events import AudioChunk, Reason, Transcript
from streamscribe.transcribe.batch import Batcher, fetch_bytes, subscribe_batched
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber

STAGE = "transcribe"
# Decoded Opus may run a few milliseconds past the chunk's end (codec padding).
DECODE_SLACK_SECONDS = 1.0
# What the consumer may prefetch of `media.audio`: about two 30 s chunks (Opus at 24 kbit/s,
# base64 in JSON), so a queued backlog costs no memory. A longer chunk still comes, alone.
AUDIO_FETCH_BYTES = 256 * 2**10


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    transcriber: Transcriber
    max_chunk_seconds: int
    batch_size: int = 1  # chunks decoded together: the setting, as far as memory admits


def refuse_longer(seconds: float, limit: int, slack: float = 0.0) -> None:
    """A chunk longer than this worker admits under its memory ceiling fails its media."""
    if seconds > limit + slack:
        raise MediaError(
            Reason.TOO_LARGE,
            f"a chunk of {seconds:.1f} s is longer than the {limit} s this worker admits",
        )


def register(broker: KafkaBroker, settings: TranscribeSettings, resources: Resources) -> None:
    delivery = Delivery(broker, settings, STAGE)
    batcher = Batcher(lambda: resources.transcriber)

    async def transcribe(chunk: AudioChunk) -> None:
        resources.transcriber.check_language(chunk.language)  # before any work on the chunk
        limit = resources.max_chunk_seconds
        refuse_longer(chunk.end - chunk.start + chunk.lead_in, limit)  # before decoding it
        audio = await asyncio.to_thread(decode_chunk, chunk.audio)
        refuse_longer(len(audio) / SAMPLE_RATE, limit, DECODE_SLACK_SECONDS)  # events can lie
        result = await batcher.transcribe(chunk, audio)
        transcript = Transcript(
            media_id=chunk.media_id,
            seq=chunk.seq,
            start=chunk.start,
            end=chunk.end,
            final=chunk.final,
            chunk_count=chunk.chunk_count,
            source_url=chunk.source_url,
            language=result.language,
            run=chunk.run,
            segments=result.segments,
        )
        # keyed by media: one media's transcripts stay in one partition, in order
        await publish_event(broker, settings.topics.transcript, transcript, chunk.media_id.encode())
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(chunk.end - chunk.start)

    async def on_audio(message: KafkaMessage) -> None:
        await delivery.handle(message, AudioChunk, transcribe)

    group = settings.transcribe.group(STAGE)
    size = settings.transcribe.batch_size
    if size == 1:
        subscribe(broker, settings.topics.audio, group, on_audio, fetch_bytes=AUDIO_FETCH_BYTES)
        return
    bound = fetch_bytes(size, AUDIO_FETCH_BYTES)
    batched = partial(
        subscribe, broker, settings.topics.audio, group, fetch_bytes=bound, max_records=size
    )
    subscribe_batched(batched, batcher, on_audio, lambda: resources.batch_size)

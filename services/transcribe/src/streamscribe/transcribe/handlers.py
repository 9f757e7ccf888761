"""media.audio -> media.transcript: decode one chunk, transcribe it off the event loop."""

# Handlers' annotations are objects, not strings (why: `common/consumer.py`).

import asyncio
from dataclasses import dataclass
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.audio import SAMPLE_RATE, decode_chunk
from streamscribe.common.consumer import Stage
from streamscribe.common.delivery import publish_event
from streamscribe.common.errors import MediaError
from streamscribe.common.events import AudioChunk, Reason, Transcript
from streamscribe.transcribe.batch import Batcher, fetch_bytes
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber

STAGE = "transcribe"
# Decoded Opus may run a few milliseconds past the chunk's end (codec padding).
DECODE_SLACK_SECONDS = 1.0
# What the consumer may prefetch of `media.audio`: about two 30 s chunks (Opus at 24 kbit/s,
# base64 in JSON), so a queued backlog costs no memory. A longer chunk still comes, alone.
AUDIO_FETCH_BYTES = 256 * 2**10


@dataclass(frozen=True)
class Resources:
    """What the handler uses: opened by the app (`app.py`) before the consumer starts, and
    given to the handler from FastStream's context, under the stage's name."""

    transcriber: Transcriber
    max_chunk_seconds: int
    batcher: Batcher
    batch_size: int = 1  # chunks decoded together: the setting, as far as memory admits


Held = Annotated[Resources, Context(STAGE)]
"""A handler parameter: this stage's resources, from FastStream's context."""


def refuse_longer(seconds: float, limit: int, slack: float = 0.0) -> None:
    """A chunk longer than this worker admits under its memory ceiling fails its media."""
    if seconds > limit + slack:
        raise MediaError(
            Reason.TOO_LARGE,
            f"a chunk of {seconds:.1f} s is longer than the {limit} s this worker admits",
        )


def router(settings: TranscribeSettings) -> KafkaRouter:
    """Transcribe's subscribers."""
    stage = Stage(settings, STAGE)

    async def transcribe(chunk: AudioChunk, broker: KafkaBroker, resources: Held) -> None:
        resources.transcriber.check_language(chunk.language)  # before any work on the chunk
        limit = resources.max_chunk_seconds
        refuse_longer(chunk.end - chunk.start + chunk.lead_in, limit)  # before decoding it
        audio = await asyncio.to_thread(decode_chunk, chunk.audio)
        refuse_longer(len(audio) / SAMPLE_RATE, limit, DECODE_SLACK_SECONDS)  # events can lie
        result = await resources.batcher.transcribe(chunk, audio)
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
            metadata=chunk.metadata,
            speech_redecoded_seconds=result.coverage.redecoded,
            speech_uncovered_seconds=result.coverage.uncovered,
        )
        # keyed by media: one media's transcripts stay in one partition, in order
        await publish_event(broker, settings.topics.transcript, transcript, chunk.media_id.encode())
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(chunk.end - chunk.start)

    async def transcribe_batch(batch: KafkaMessage, broker: KafkaBroker, resources: Held) -> None:
        """Each record of the batch with its own outcome, their chunks decoded together (as many
        at a time as memory admits); the batch committed once every record has its outcome."""

        async def one(chunk: AudioChunk) -> None:
            await transcribe(chunk, broker, resources)

        works = stage.delivery.settlements(batch, AudioChunk, one, broker)
        size = resources.batch_size
        for start in range(0, len(works), size):
            await resources.batcher.run(works[start : start + size])
        await stage.delivery.commit(batch)

    group = settings.transcribe.group(STAGE, settings.topics)
    size = settings.transcribe.batch_size
    if size == 1:
        stage.subscribe(settings.topics.audio, group, transcribe, fetch_bytes=AUDIO_FETCH_BYTES)
    else:
        bound = fetch_bytes(size, AUDIO_FETCH_BYTES)
        stage.subscribe_batches(settings.topics.audio, group, transcribe_batch, size, bound)
    return stage.router

"""media.audio -> media.transcript: decode one chunk, transcribe it off the event loop."""

from __future__ import annotations

import asyncio
import io

import numpy as np
from faster_whisper import decode_audio
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import JSON_HEADERS, Delivery
from streamscribe.common.errors import MediaError
from streamscribe.common.events import AudioChunk, Reason, Transcript, encode_event
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber

STAGE = "transcribe"


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    transcriber: Transcriber


def decode(audio: bytes) -> np.ndarray:
    try:
        return np.asarray(decode_audio(io.BytesIO(audio), sampling_rate=16_000), np.float32)
    except Exception as exc:
        raise MediaError(Reason.DECODE_ERROR, f"audio chunk cannot be decoded: {exc}") from exc


def register(broker: KafkaBroker, settings: TranscribeSettings, resources: Resources) -> None:
    delivery = Delivery(broker, settings, STAGE)

    async def transcribe(chunk: AudioChunk) -> None:
        audio = await asyncio.to_thread(decode, chunk.audio)
        result = await asyncio.to_thread(
            resources.transcriber.transcribe, audio, chunk.start, chunk.language
        )
        transcript = Transcript(
            media_id=chunk.media_id,
            seq=chunk.seq,
            start=chunk.start,
            end=chunk.end,
            final=chunk.final,
            chunk_count=chunk.chunk_count,
            source_url=chunk.source_url,
            language=result.language,
            segments=result.segments,
        )
        await broker.publish(
            encode_event(transcript),
            settings.topics.transcript,
            key=chunk.media_id.encode(),  # one media's transcripts stay in one partition
            headers=JSON_HEADERS,
        )
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(chunk.end - chunk.start)

    async def on_audio(message: KafkaMessage) -> None:
        await delivery.handle(message, AudioChunk, transcribe)

    group = settings.transcribe.group_id or "streamscribe-transcribe"
    subscribe(broker, settings.topics.audio, group, on_audio)

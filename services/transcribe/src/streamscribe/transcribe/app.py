"""The transcribe service: model loaded once, before the consumer joins its group; the longest
chunk it accepts is what fits between the loaded model and the memory pause mark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.events import Event, MediaFailed, Transcript
from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.memory import admitted, load_model, resolve_marks, rss
from streamscribe.common.service import Lifespan, Readiness, build_app
from streamscribe.transcribe.batch import admitted_batch
from streamscribe.transcribe.handlers import Resources, register
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber

# Measured with tiny.en int8, beam 5 (peak RSS above the loaded model): ~105 MiB for any
# inference, plus ~0.4 MiB per second of audio (decoded samples, features). Rounded up.
INFERENCE_BYTES = 128 * 2**20
BYTES_PER_AUDIO_SECOND = 2**20


def attach(broker: KafkaBroker, settings: TranscribeSettings) -> Lifespan:
    """Transcribe's subscribers on `broker`; the lifespan that loads their model."""
    resources = Resources()
    register(broker, settings, resources)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.transcriber = await load_model(
            lambda: Transcriber(settings.transcribe, settings.data_dir)
        )
        resources.max_chunk_seconds = admitted(
            resolve_marks(settings.memory).pause,
            rss() + INFERENCE_BYTES,
            BYTES_PER_AUDIO_SECOND,
            settings.transcribe.max_chunk_seconds,
        )
        resources.batch_size = admitted_batch(
            settings.transcribe.batch_size,
            resolve_marks(settings.memory).pause,
            rss() + INFERENCE_BYTES + resources.max_chunk_seconds * BYTES_PER_AUDIO_SECOND,
            settings.transcribe.beam_size,
        )
        await ensure_topics(settings.kafka, settings.topics)
        yield

    return lifespan


def create_app(settings: TranscribeSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "transcribe", settings.shutdown_grace_seconds)
    lifespan = attach(broker, settings)
    publishes: dict[str, type[Event]] = {
        settings.topics.transcript: Transcript,
        settings.topics.failed: MediaFailed,
    }
    title = "streamscribe transcribe"
    return build_app(broker, lifespan, Readiness(), settings.memory, None, title, publishes)

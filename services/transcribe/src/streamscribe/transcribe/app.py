"""The transcribe service: model loaded once, before the consumer joins its group; the longest
chunk it accepts is what fits between the loaded model and the memory pause mark."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.events import Event, MediaFailed, Transcript
from streamscribe.common.memory import admitted, load_model, resolve_marks, rss
from streamscribe.common.service import Service, build_app
from streamscribe.transcribe.batch import Batcher, admitted_batch
from streamscribe.transcribe.handlers import STAGE, Resources, router
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcriber

# Measured with tiny.en int8, beam 5 (peak RSS above the loaded model): ~105 MiB for any
# inference, plus ~0.4 MiB per second of audio (decoded samples, features). Rounded up.
INFERENCE_BYTES = 128 * 2**20
BYTES_PER_AUDIO_SECOND = 2**20


def service(settings: TranscribeSettings) -> Service:
    """Transcribe's subscribers, and the resources that load their model."""

    @asynccontextmanager
    async def resources(broker: KafkaBroker) -> AsyncIterator[Mapping[str, object]]:
        transcriber = await load_model(lambda: Transcriber(settings.transcribe, settings.data_dir))
        max_chunk_seconds = admitted(
            resolve_marks(settings.memory).pause,
            rss() + INFERENCE_BYTES,
            BYTES_PER_AUDIO_SECOND,
            settings.transcribe.max_chunk_seconds,
        )
        batch_size = admitted_batch(
            settings.transcribe.batch_size,
            resolve_marks(settings.memory).pause,
            rss() + INFERENCE_BYTES + max_chunk_seconds * BYTES_PER_AUDIO_SECOND,
            settings.transcribe.beam_size,
        )
        batcher = Batcher(transcriber)
        yield {STAGE: Resources(transcriber, max_chunk_seconds, batcher, batch_size)}

    publishes: dict[str, type[Event]] = {
        settings.topics.transcript: Transcript,
        settings.topics.failed: MediaFailed,
    }
    return Service(STAGE, router(settings), resources, publishes)


def create_app(settings: TranscribeSettings) -> AsgiFastStream:
    return build_app(settings, STAGE, service(settings))

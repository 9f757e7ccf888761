"""media.transcript -> vector store -> media.indexed once every chunk of a media is stored."""

from __future__ import annotations

import asyncio

import numpy as np
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import Delivery, publish_event
from streamscribe.common.events import MediaIndexed, Transcript
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.passages import passages_for
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store import VectorStore

STAGE = "embed"


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    embedder: TextEmbedder
    store: VectorStore
    batch_size: int


def embed_in_batches(embedder: TextEmbedder, texts: list[str], size: int) -> np.ndarray:
    """At most `size` texts per forward pass: the batch the memory budget admits."""
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return np.concatenate([embedder.embed(texts[i : i + size]) for i in range(0, len(texts), size)])


def register(broker: KafkaBroker, settings: EmbedSettings, resources: Resources) -> None:
    delivery = Delivery(broker, settings, STAGE)

    async def index(transcript: Transcript) -> None:
        passages = passages_for(transcript)
        texts = [p.text for p in passages]
        vectors = await asyncio.to_thread(
            embed_in_batches, resources.embedder, texts, resources.batch_size
        )
        await asyncio.to_thread(resources.store.upsert, transcript, passages, vectors)
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(transcript.end - transcript.start)
        await announce_if_complete(transcript)

    async def announce_if_complete(transcript: Transcript) -> None:
        """The store, not this process, knows how many chunks are in: any worker may finish."""
        progress = await asyncio.to_thread(resources.store.progress, transcript.media_id)
        if not progress.complete or progress.total is None:
            return
        event = MediaIndexed(
            media_id=transcript.media_id,
            source_url=transcript.source_url,
            chunk_count=progress.total,
            passage_count=progress.passages,
        )
        await publish_event(broker, settings.topics.indexed, event, transcript.media_id.encode())

    async def on_transcript(message: KafkaMessage) -> None:
        await delivery.handle(message, Transcript, index)

    group = settings.embed.group_id or "streamscribe-embed"
    subscribe(broker, settings.topics.transcript, group, on_transcript)

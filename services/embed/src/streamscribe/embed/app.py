"""The embed service: model and store opened before the consumer joins its group; the batch
it embeds at once is what fits between the loaded model and the memory pause mark."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.memory import admitted, load_model, resolve_marks, rss
from streamscribe.common.service import Lifespan, Readiness, build_app
from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.handlers import Resources, register
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.factory import open_index

# Measured with all-MiniLM-L6-v2 on the torch backend, passages of 256 tokens (its longest):
# peak RSS grows by 4-6 MiB per passage in a batch (one forward pass's activations). Rounded up.
BYTES_PER_PASSAGE = 6 * 2**20


def attach(broker: KafkaBroker, settings: EmbedSettings) -> Lifespan:
    """Embed's subscribers on `broker`; the lifespan that loads the model and opens the index."""
    resources = Resources()
    register(broker, settings, resources)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.embedder = await load_model(
            lambda: load_embedder(settings.embed, settings.data_dir)
        )
        resources.batch_size = admitted(
            resolve_marks(settings.memory).pause,
            rss(),
            BYTES_PER_PASSAGE,
            settings.embed.batch_size,
        )
        resources.index = await asyncio.to_thread(
            open_index, settings, resources.embedder.dimension
        )
        await ensure_topics(settings.kafka, settings.topics)
        try:
            yield
        finally:
            resources.index.close()

    return lifespan


def create_app(settings: EmbedSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "embed", settings.shutdown_grace_seconds)
    return build_app(broker, attach(broker, settings), Readiness(), settings.memory)

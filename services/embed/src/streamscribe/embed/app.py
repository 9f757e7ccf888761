"""The embed service: model and store opened before the consumer joins its group; the batch
it embeds at once is what fits between the loaded model and the memory pause mark. It serves the
HTTP API (`api.py`): it owns the ledger and the index, and its model stays loaded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.events import Event, MediaFailed, MediaIndexed
from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.memory import admitted, load_model, resolve_marks, rss
from streamscribe.common.service import Lifespan, Readiness, build_app
from streamscribe.embed.api import MediaApi
from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.handlers import Resources, register
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.factory import open_index

# Measured with all-MiniLM-L6-v2 on the torch backend, passages of 256 tokens (its longest):
# peak RSS grows by 4-6 MiB per passage in a batch (one forward pass's activations). Rounded up.
BYTES_PER_PASSAGE = 6 * 2**20


def attach(broker: KafkaBroker, settings: EmbedSettings) -> tuple[Lifespan, MediaApi]:
    """Embed's subscribers on `broker`; the lifespan that loads the model and opens the index;
    the HTTP API, served once the lifespan has opened them."""
    resources = Resources()
    register(broker, settings, resources)
    api = MediaApi(broker, settings)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        resources.embedder = await load_model(
            lambda: load_embedder(settings.embed, settings.data_dir)
        )
        # the one batching layer: the embedder's, sized to what the memory budget admits
        resources.embedder.batch_size = admitted(
            resolve_marks(settings.memory).pause,
            rss(),
            BYTES_PER_PASSAGE,
            settings.embed.batch_size,
        )
        resources.index = await asyncio.to_thread(
            open_index, settings, resources.embedder.dimension
        )
        api.open(
            await asyncio.to_thread(open_index, settings, resources.embedder.dimension),
            resources.embedder,
        )
        await ensure_topics(settings.kafka, settings.topics)
        try:
            yield
        finally:
            api.close()
            resources.index.close()

    return lifespan, api


def create_app(settings: EmbedSettings) -> AsgiFastStream:
    broker = make_broker(settings.kafka, "embed", settings.shutdown_grace_seconds)
    lifespan, api = attach(broker, settings)
    publishes: dict[str, type[Event]] = {
        settings.topics.indexed: MediaIndexed,
        settings.topics.failed: MediaFailed,
    }
    title = "streamscribe embed"
    return build_app(broker, lifespan, Readiness(), settings.memory, api, title, publishes)

"""The embed service: model and store opened before the consumer joins its group; the batch
it embeds at once is what fits between the loaded model and the memory pause mark."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker

from streamscribe.common.events import Event, MediaFailed, MediaIndexed
from streamscribe.common.memory import admitted, load_model, resolve_marks, rss
from streamscribe.common.service import Service, build_app
from streamscribe.embed.embedder import shared_embedder
from streamscribe.embed.handlers import STAGE as STAGE
from streamscribe.embed.handlers import Resources, router
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.factory import open_index

# Measured with all-MiniLM-L6-v2 on the torch backend, passages of 256 tokens (its longest):
# peak RSS grows by 4-6 MiB per passage in a batch (one forward pass's activations). Rounded up.
BYTES_PER_PASSAGE = 6 * 2**20


def service(settings: EmbedSettings) -> Service:
    """Embed's subscribers, and the resources that load the model and open the index."""

    @asynccontextmanager
    async def resources(broker: KafkaBroker) -> AsyncIterator[Mapping[str, object]]:
        embedder = await load_model(lambda: shared_embedder(settings.embed, settings.data_dir))
        # the one batching layer: the embedder's, sized to what the memory budget admits
        embedder.batch_size = admitted(
            resolve_marks(settings.memory).pause,
            rss(),
            BYTES_PER_PASSAGE,
            settings.embed.batch_size,
        )
        index = await asyncio.to_thread(open_index, settings, embedder.dimension)
        try:
            yield {STAGE: Resources(embedder, index)}
        finally:
            index.close()

    publishes: dict[str, type[Event]] = {
        settings.topics.indexed: MediaIndexed,
        settings.topics.failed: MediaFailed,
    }
    return Service(STAGE, router(settings), resources, publishes)


def create_app(settings: EmbedSettings) -> AsgiFastStream:
    return build_app(settings, STAGE, service(settings))

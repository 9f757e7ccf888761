"""One process for one box (`up --single-process`): ingest, transcribe and embed as subscribers
of one FastStream app, on one broker connection, with one /metrics, /healthz and /readyz.

Still through Kafka topics, still one model each, still the same delivery policy: each stage
registers exactly the subscribers its own worker would. It serves on embed's port, with embed's
HTTP API, so a client finds the API at the same address in both modes. What one process saves
on a small host is the interpreter and the libraries every worker would load again (Python,
pydantic, FastStream, aiokafka, uvicorn, numpy: about 50-60 MB each).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from faststream.asgi import AsgiFastStream

from streamscribe.common.kafka import make_broker
from streamscribe.common.service import Lifespan, Readiness, build_app
from streamscribe.embed.app import attach as attach_embed
from streamscribe.embed.settings import EmbedSettings
from streamscribe.ingest.app import attach as attach_ingest
from streamscribe.ingest.settings import IngestSettings
from streamscribe.transcribe.app import attach as attach_transcribe
from streamscribe.transcribe.settings import TranscribeSettings


def create_app(
    ingest: IngestSettings, transcribe: TranscribeSettings, embed: EmbedSettings
) -> AsgiFastStream:
    broker = make_broker(ingest.kafka, "onebox", ingest.shutdown_grace_seconds)
    # each stage sizes its largest input (chunk seconds, embedding batch) from the RSS it finds
    # after its own load: the largest model first, so embed and ingest count it in
    embed_lifespan, api = attach_embed(broker, embed)
    lifespans = [
        attach_transcribe(broker, transcribe),
        embed_lifespan,
        attach_ingest(broker, ingest),
    ]
    together = _together(lifespans)
    return build_app(broker, together, Readiness(), ingest.memory, api, "streamscribe all")


def _together(lifespans: list[Lifespan]) -> Lifespan:
    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for each in lifespans:
                await stack.enter_async_context(each())
            yield

    return lifespan

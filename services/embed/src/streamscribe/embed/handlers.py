"""media.transcript -> index -> media.indexed, once per completion; the ledger also follows
media.requested and media.failed, so it knows every media, whichever stage it reached."""

# Handlers' annotations are objects, not strings (why: `common/consumer.py`).

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from streamscribe.common import metrics
from streamscribe.common.consumer import Stage
from streamscribe.common.delivery import publish_event
from streamscribe.common.errors import TransientError
from streamscribe.common.events import (
    MediaFailed,
    MediaIndexed,
    MediaRequested,
    Transcript,
)
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.passages import passages_for
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Announcement, AnnouncementInFlightError, Ledger

STAGE = "embed"
LEDGER_BACKOFF_MAX_SECONDS = 30.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What the handlers use: opened by the app (`app.py`) before the consumers start, and
    given to the handlers from FastStream's context, under the stage's name."""

    embedder: TextEmbedder
    index: Index


Held = Annotated[Resources, Context(STAGE)]
"""A handler parameter: this stage's resources, from FastStream's context."""


def router(settings: EmbedSettings) -> KafkaRouter:
    """Embed's subscribers: the chunks it indexes, and the topics its ledger follows."""
    stage = Stage(settings, STAGE)

    async def index(transcript: Transcript, broker: KafkaBroker, resources: Held) -> None:
        if not await asyncio.to_thread(resources.index.admits, transcript):
            log.info("embed: %s belongs to an older run; skipped", transcript.chunk_id)
            return
        passages = passages_for(transcript)
        texts = [p.text for p in passages]
        vectors = await asyncio.to_thread(resources.embedder.embed, texts)
        try:
            completed = await asyncio.to_thread(
                resources.index.store, transcript, passages, vectors
            )
        except AnnouncementInFlightError as pending:
            completed = await _after_claim(resources.index.ledger, pending)
        metrics.CHUNKS.labels(STAGE).inc()
        metrics.AUDIO_SECONDS.labels(STAGE).inc(transcript.end - transcript.start)
        if completed is not None:
            await announce(broker, resources.index.ledger, completed)

    async def announce(broker: KafkaBroker, ledger: Ledger, completed: Announcement) -> None:
        """The ledger, not this process, decided the media is complete: any worker may finish
        one, and exactly one gets the claim to say so."""
        event = MediaIndexed(
            media_id=completed.media_id,
            source_url=completed.source_url,
            chunk_count=completed.chunk_count,
            passage_count=completed.passages,
            run=completed.run,
        )
        await publish_event(broker, settings.topics.indexed, event, completed.media_id.encode())
        await asyncio.to_thread(ledger.announced, completed)

    async def on_requested(request: MediaRequested, resources: Held) -> None:
        assert request.run is not None  # the decoder gives a request its record's run
        ledger = resources.index.ledger
        await _until_written(
            ledger.request,
            request.resolved_id,
            request.run,
            request.url,
            request.callback_url,
            request.metadata,
        )

    async def on_failed(failed: MediaFailed, resources: Held) -> None:
        failure = {"stage": failed.stage, "reason": failed.reason.value, "detail": failed.detail}
        ledger = resources.index.ledger
        await _until_written(ledger.fail, failed.media_id, failed.run, failure, failed.source_url)

    group = settings.embed.group(STAGE, settings.topics)
    stage.subscribe(settings.topics.transcript, group, index)
    # followed, not owned: ingest dead-letters an invalid request and releases its retries, and
    # a ledger write that fails waits in place (below) rather than hand a request back to ingest
    stage.follow(settings.topics.requested, f"{group}-ledger", on_requested)
    stage.follow(settings.topics.failed, f"{group}-ledger", on_failed)
    return stage.router


async def _after_claim(ledger: Ledger, pending: AnnouncementInFlightError) -> Announcement | None:
    """Wait out another worker's unconfirmed claim, then announce if it never confirmed."""
    while True:
        await asyncio.sleep(pending.wait)
        try:
            return await asyncio.to_thread(ledger.reclaim, pending.media_id)
        except AnnouncementInFlightError as again:
            pending = again


async def _until_written(write: Callable[..., object], *args: object) -> None:
    """A ledger write that fails transiently (database busy past its timeout, I/O) is tried
    again in place: the record must not be lost, and its partition may wait."""
    delay = 0.5
    while True:
        try:
            await asyncio.to_thread(write, *args)
            return
        except TransientError as exc:
            log.warning("embed: ledger write failed (%s); again in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LEDGER_BACKOFF_MAX_SECONDS)

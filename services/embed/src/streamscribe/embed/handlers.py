"""media.transcript -> index -> media.indexed, once per completion; the ledger also follows
media.requested and media.failed, so it knows every media, whichever stage it reached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from streamscribe.common import metrics
from streamscribe.common.consumer import subscribe
from streamscribe.common.delivery import Delivery, publish_event, with_run
from streamscribe.common.errors import InvalidEventError, TransientError
from streamscribe.common.events import (
    MediaFailed,
    MediaIndexed,
    MediaRequested,
    Transcript,
    parse_event,
)
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.passages import passages_for
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Announcement, AnnouncementInFlightError, Ledger

STAGE = "embed"
LEDGER_BACKOFF_MAX_SECONDS = 30.0
log = logging.getLogger(__name__)


class Resources:
    """Filled by the app's lifespan before the consumer starts."""

    embedder: TextEmbedder
    index: Index


def register(broker: KafkaBroker, settings: EmbedSettings, resources: Resources) -> None:
    delivery = Delivery(broker, settings, STAGE)

    async def index(transcript: Transcript) -> None:
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
            await announce(completed)

    async def announce(completed: Announcement) -> None:
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
        await asyncio.to_thread(resources.index.ledger.announced, completed)

    async def on_transcript(message: KafkaMessage) -> None:
        await delivery.handle(message, Transcript, index)

    async def on_requested(message: KafkaMessage) -> None:
        try:
            request = with_run(parse_event(MediaRequested, message.body), message)
        except InvalidEventError:
            await message.ack()  # ingest dead-letters it and fails the media it names
            return
        assert request.run is not None
        ledger = resources.index.ledger
        await _until_written(ledger.request, request.resolved_id, request.run, request.url)
        await message.ack()

    async def on_failed(message: KafkaMessage) -> None:
        try:
            failed = parse_event(MediaFailed, message.body)
        except InvalidEventError:
            await message.ack()
            return
        failure = {"stage": failed.stage, "reason": failed.reason.value, "detail": failed.detail}
        ledger = resources.index.ledger
        await _until_written(ledger.fail, failed.media_id, failed.run, failure, failed.source_url)
        await message.ack()

    group = settings.embed.group(STAGE)
    subscribe(broker, settings.topics.transcript, group, on_transcript)
    # no retry twins: media.requested.retry belongs to ingest, and a ledger write that fails
    # waits in place (below) rather than hand a request back to ingest twice
    for topic, handler in ((settings.topics.requested, on_requested),
                           (settings.topics.failed, on_failed)):  # fmt: skip
        subscribe(broker, topic, f"{group}-ledger", handler, retries=False)


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

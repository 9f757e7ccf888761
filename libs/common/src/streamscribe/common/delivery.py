"""The one place that decides what happens to a consumed message: ack, retry, dead letter or fail.

`Delivery` is a FastStream middleware: a stage's router carries it, so every subscriber of the
stage goes through it. The subscriber's decoder validates the message into its event model; an
invalid one raises `InvalidEventError` where the middleware sees it, before the handler runs.
The offset is committed only after the outcome (output, `media.failed`, retry or dead letter) is
acknowledged by the broker, so a crash anywhere before that redelivers the message.

A batch subscriber (transcribe with a batch size above 1) is outside the middleware, which sees
one record at a time: it `settle`s each record of its batch under the same policy, then commits
the batch once every record has its outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from aiokafka import ConsumerRecord
from faststream import ContextRepo
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaParser
from faststream.message import StreamMessage
from faststream.middlewares import BaseMiddleware

from streamscribe.common import logcontext, metrics
from streamscribe.common.errors import InvalidEventError, MediaError, TransientError
from streamscribe.common.events import (
    RUN_PATTERN,
    Event,
    MediaFailed,
    MediaRequested,
    Reason,
    encode_event,
    media_id_for_url,
    parse_event,
    record_run,
)
from streamscribe.common.memory import recycle_if_over, resolve_marks
from streamscribe.common.settings import CommonSettings

log = logging.getLogger(__name__)

ATTEMPT = "streamscribe-attempt"
NOT_BEFORE = "streamscribe-not-before"
ERROR = "streamscribe-error"
STAGE = "streamscribe-stage"
ORIGIN = "streamscribe-origin-topic"
RUN = "streamscribe-run"
JSON_HEADERS = {"content-type": "application/json"}
# One record of a batch as a message of its own (committed with its batch, not alone).
_RECORDS = AioKafkaParser(KafkaMessage, None)

E = TypeVar("E", bound=Event)
CallNext = Callable[[StreamMessage[Any]], Awaitable[Any]]


async def publish_event(broker: KafkaBroker, topic: str, event: Event, key: bytes) -> None:
    """Publish an event as plain JSON; returns once the broker acknowledged it (acks=all)."""
    await broker.publish(encode_event(event), topic, key=key, headers=JSON_HEADERS)


def retry_topic(topic: str) -> str:
    return f"{topic}.retry"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def event_decoder(model: type[E]) -> Callable[[KafkaMessage], Awaitable[E]]:
    """A subscriber's decoder: the message as `model`, or `InvalidEventError` (raised inside the
    middlewares' scope, so the delivery policy dead-letters it). A request that names no run
    gets its record's, so every consumer of it agrees."""

    async def decode(message: KafkaMessage) -> E:
        return with_run(parse_event(model, message.body), message)

    return decode


class _Scope(BaseMiddleware[Any, Any]):
    """FastStream's per-message middleware object; the policy it applies decides everything."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: _Policy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: CallNext, msg: StreamMessage[Any]) -> None:
        assert isinstance(msg, KafkaMessage), "a Kafka broker's message"
        await self.policy.deliver(msg, call_next, self.context.get("broker"))


class _Policy(ABC):
    """A FastStream broker middleware: a factory of one `_Scope` per message."""

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _Scope:
        return _Scope(msg, context=context, policy=self)

    @abstractmethod
    async def deliver(
        self, message: KafkaMessage, call_next: CallNext, broker: KafkaBroker
    ) -> None: ...


class Follow(_Policy):
    """The policy of a subscriber that follows a topic another stage owns (embed's ledger reads
    `media.requested` and `media.failed`): an invalid event is skipped, since its owner
    dead-letters it; a handled one is committed. A handler's error leaves it uncommitted."""

    async def deliver(
        self, message: KafkaMessage, call_next: CallNext, broker: KafkaBroker
    ) -> None:
        try:
            await _event(message)
        except InvalidEventError:
            await message.ack()
            return
        await call_next(message)
        await message.ack()


class Delivery(_Policy):
    """The outcome policy of one stage: the middleware of the subscribers it owns."""

    def __init__(self, settings: CommonSettings, stage: str) -> None:
        self.settings = settings
        self.stage = stage
        for counter in (
            metrics.RETRIES,
            metrics.DEAD_LETTERS,
            metrics.CHUNKS,
            metrics.AUDIO_SECONDS,
        ):
            counter.labels(stage)  # a series from the start: the first increment shows in rate()
        self.ceiling = resolve_marks(settings.memory).ceiling

    async def deliver(
        self, message: KafkaMessage, call_next: CallNext, broker: KafkaBroker
    ) -> None:
        await self.settle(message, call_next, broker)
        await self.commit(message)

    async def settle(self, message: KafkaMessage, call_next: CallNext, broker: KafkaBroker) -> None:
        """Give one record its outcome (output, `media.failed`, retry or dead letter), acknowledged
        by the broker; not committed: the caller commits it, alone or with its batch."""
        started = time.monotonic()
        try:
            event = await _event(message)
        except InvalidEventError as exc:
            await self._reject(broker, message, exc)
        else:
            with logcontext.about(_identity(event)[0], getattr(event, "seq", None)):
                await self._run(broker, message, event, call_next)
        metrics.STAGE_SECONDS.labels(self.stage).observe(time.monotonic() - started)

    def settlements(
        self,
        batch: KafkaMessage,
        model: type[E],
        handle: Callable[[E], Awaitable[None]],
        broker: KafkaBroker,
    ) -> list[Callable[[], Awaitable[None]]]:
        """One settlement per record of a batch subscriber's message: the record decoded as
        `model` (as a subscriber's decoder would), `handle`d and given its own outcome by
        `settle`. None commits: `commit` the batch once every one has run."""
        records = batch.raw_message
        assert isinstance(records, tuple | list), "a batch subscriber's message"  # a list in tests
        return [partial(self._settle_record, record, model, handle, broker) for record in records]

    async def _settle_record(
        self,
        record: ConsumerRecord[bytes, bytes],
        model: type[E],
        handle: Callable[[E], Awaitable[None]],
        broker: KafkaBroker,
    ) -> None:
        message = await _RECORDS.parse_message(record)
        assert isinstance(message, KafkaMessage)
        message.set_decoder(event_decoder(model))

        async def call(decoded: StreamMessage[Any]) -> None:
            event = await decoded.decode()  # decoded once already, by `settle`: cached
            assert isinstance(event, model)
            await handle(event)

        await self.settle(message, call, broker)

    async def commit(self, message: KafkaMessage) -> None:
        """Commit what `message` consumed (one record or a batch) once each has its outcome."""
        await message.ack()
        # committed: if this left RSS above the ceiling, a restart will not repeat it
        recycle_if_over(self.ceiling, f"{self.stage}: after a message")

    async def _run(
        self, broker: KafkaBroker, message: KafkaMessage, event: Event, call_next: CallNext
    ) -> None:
        try:
            await call_next(message)
        except MediaError as exc:
            media_id, url = _identity(event)
            run = getattr(event, "run", None)
            await self.fail(broker, media_id, exc.reason, exc.detail, url, run)
        except Exception as exc:
            if not isinstance(exc, TransientError):
                log.exception("%s: unexpected error", self.stage)
            await self._retry(broker, message, exc)

    async def fail(
        self,
        broker: KafkaBroker,
        media_id: str,
        reason: Reason,
        detail: str,
        url: str | None,
        run: str | None = None,
    ) -> None:
        """Publish the terminal `media.failed` of one media (of one run of it, when known)."""
        log.warning("%s: media %s failed: %s: %s", self.stage, media_id, reason.value, detail)
        metrics.FAILURES.labels(self.stage, reason.value).inc()
        event = MediaFailed(
            media_id=media_id,
            stage=self.stage,
            reason=reason,
            detail=detail,
            source_url=url,
            run=run,
        )
        await publish_event(broker, self.settings.topics.failed, event, media_id.encode())

    async def _reject(
        self, broker: KafkaBroker, message: KafkaMessage, exc: InvalidEventError
    ) -> None:
        """Not a valid event: keep it in the dead-letter topic; fail the media it names, if any."""
        await self._dead_letter(broker, message, exc)
        named = _named_media(message.body)
        if named:
            media_id, url, run = named
            await self.fail(broker, media_id, Reason.INVALID_EVENT, str(exc), url, run)

    async def _retry(self, broker: KafkaBroker, message: KafkaMessage, exc: Exception) -> None:
        attempt = int(message.headers.get(ATTEMPT, "1"))
        if attempt >= self.settings.retry.max_attempts:
            await self._dead_letter(broker, message, exc)
            return
        delay = min(
            self.settings.retry.backoff_seconds * 2 ** (attempt - 1),
            self.settings.retry.backoff_max_seconds,
        ) * random.uniform(0.5, 1.0)
        log.warning(
            "%s: attempt %d failed (%s); retrying in %.1fs", self.stage, attempt, exc, delay
        )
        metrics.RETRIES.labels(self.stage).inc()
        headers = _carry(message) | {
            RUN: message_run(message),
            ATTEMPT: str(attempt + 1),
            NOT_BEFORE: f"{time.time() + delay:.3f}",
            ERROR: _describe(exc),
            ORIGIN: _topic(message),
        }
        await broker.publish(
            message.body, retry_topic(_topic(message)), key=_record(message).key, headers=headers
        )

    async def _dead_letter(
        self, broker: KafkaBroker, message: KafkaMessage, exc: Exception
    ) -> None:
        topic = message.headers.get(ORIGIN) or _topic(message)
        log.error("%s: dead letter from %s: %s", self.stage, topic, exc)
        metrics.DEAD_LETTERS.labels(self.stage).inc()
        headers = _carry(message) | {
            ATTEMPT: message.headers.get(ATTEMPT, "1"),
            ERROR: _describe(exc),
            STAGE: self.stage,
            ORIGIN: topic,
        }
        await broker.publish(
            message.body, dead_letter_topic(topic), key=_record(message).key, headers=headers
        )


async def release_retry(broker: KafkaBroker, message: KafkaMessage) -> None:
    """Hold a retry until its time, then put it back on the topic it came from."""
    not_before = float(message.headers.get(NOT_BEFORE, "0"))
    await asyncio.sleep(max(0.0, not_before - time.time()))
    headers = {k: v for k, v in _carry(message).items() if k != NOT_BEFORE}
    await broker.publish(
        message.body, message.headers[ORIGIN], key=_record(message).key, headers=headers
    )
    await message.ack()


def message_run(message: KafkaMessage) -> str:
    """The run a request message stands for: the header a retry carries, else its record's place.
    A retried request comes back as a new record; the header keeps its run the same."""
    record = _record(message)
    return message.headers.get(RUN) or record_run(record.timestamp, record.partition, record.offset)


def with_run(event: E, message: KafkaMessage) -> E:
    """A request that names no run gets its message's, so every consumer of it agrees."""
    if isinstance(event, MediaRequested) and event.run is None:
        return event.model_copy(update={"run": message_run(message)})
    return event


async def _event(message: KafkaMessage) -> Event:
    """The message's event, from its subscriber's `event_decoder` (cached for the handler)."""
    event = await message.decode()
    if not isinstance(event, Event):
        raise TypeError(f"subscribe with `Stage` (an event decoder), not {type(event)}")
    return event


def _record(message: KafkaMessage) -> ConsumerRecord[bytes, bytes]:
    """The one record behind a message (a batch's records are settled one by one)."""
    record = message.raw_message
    assert not isinstance(record, tuple), "a batch is settled record by record"
    return record


def _topic(message: KafkaMessage) -> str:
    return str(_record(message).topic)


def _carry(message: KafkaMessage) -> dict[str, str]:
    """Headers worth keeping across hops: ours and the content type."""
    return {
        k: v
        for k, v in message.headers.items()
        if k.startswith("streamscribe-") or k == "content-type"
    }


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def _identity(event: Event) -> tuple[str, str | None]:
    media_id = getattr(event, "resolved_id", None) or getattr(event, "media_id", "unknown")
    return str(media_id), getattr(event, "url", None) or getattr(event, "source_url", None)


def _named_media(body: bytes) -> tuple[str, str | None, str | None] | None:
    """(media_id, url, run) of a message that is JSON naming a media, even if invalid otherwise.
    The run, when it names a valid one, keeps the failure to that run: a late invalid event of
    an older run must not fail the newest."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    url = data.get("url") if isinstance(data.get("url"), str) else None
    source = data.get("source_url") if isinstance(data.get("source_url"), str) else None
    run = data.get("run") if isinstance(data.get("run"), str) else None
    run = run if run and re.fullmatch(RUN_PATTERN, run) else None
    media_id = data.get("media_id") if isinstance(data.get("media_id"), str) else None
    if media_id:
        return media_id[:128], url or source, run
    return (media_id_for_url(url), url, run) if url else None  # a request: its id is its URL's

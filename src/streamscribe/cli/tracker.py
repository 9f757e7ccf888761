"""Per-media state folded from the topics themselves, so `status` is right whichever worker did
the work and across restarts: Kafka is the record, not any one process's memory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamscribe.common.events import media_id_for_url
from streamscribe.common.kafka import client_kwargs
from streamscribe.common.settings import CommonSettings

Offsets = dict[TopicPartition, int]


@dataclass
class MediaState:
    """Chunk sets only grow (redelivery repeats a seq, never adds one); terminal events are
    compared by broker timestamp, so a resubmitted media reads as in progress again."""

    media_id: str
    source_url: str | None = None
    requested_at: int = 0
    indexed_at: int = 0
    failed_at: int = 0
    chunk_count: int | None = None
    audio: set[int] = field(default_factory=set)
    transcribed: set[int] = field(default_factory=set)
    failure: dict[str, str] | None = None

    @property
    def indexed(self) -> bool:
        return self.indexed_at > max(self.failed_at, self.requested_at)

    @property
    def failed(self) -> bool:
        return self.failed_at > max(self.indexed_at, self.requested_at)

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        if self.indexed:
            return "indexed"
        if self.transcribed or (self.chunk_count and len(self.audio) >= self.chunk_count):
            return "transcribing"
        if self.audio:
            return "ingesting"
        return "requested"

    def as_dict(self) -> dict[str, Any]:
        return {
            "media_id": self.media_id,
            "state": self.state,
            "source_url": self.source_url,
            "chunks": {
                "total": self.chunk_count,
                "audio": len(self.audio),
                "transcribed": len(self.transcribed),
            },
            "failure": self.failure if self.failed else None,
        }


class Tracker:
    """Reads the pipeline topics with a group-less consumer (it commits nothing)."""

    def __init__(self, settings: CommonSettings) -> None:
        topics = settings.topics
        self.kinds = {
            topics.requested: "requested",
            topics.audio: "audio",
            topics.transcript: "transcript",
            topics.indexed: "indexed",
            topics.failed: "failed",
        }
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings.kafka),
            client_id=f"{settings.kafka.client_id}-tracker",
            enable_auto_commit=False,
            max_partition_fetch_bytes=settings.kafka.max_request_bytes * 2,
        )
        self.states: dict[str, MediaState] = {}

    async def __aenter__(self) -> Tracker:
        try:
            await self.consumer.start()
        except Exception:
            await self.consumer.stop()
            raise
        await self.consumer.topics()  # loads cluster metadata, so partitions are known
        partitions = [
            TopicPartition(topic, p)
            for topic in self.kinds
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await self.consumer.stop()
            raise LookupError("no pipeline topics on this broker yet: is the pipeline up?")
        self.consumer.assign(partitions)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def end_offsets(self) -> Offsets:
        result: Offsets = await self.consumer.end_offsets(list(self.consumer.assignment()))
        return result

    async def snapshot(self) -> dict[str, MediaState]:
        """Every media's state as of now, read from the start of each topic."""
        await self.consumer.seek_to_beginning()
        ends = await self.end_offsets()
        while await self._behind(ends):
            await self._poll()
        return self.states

    async def _behind(self, ends: Offsets) -> bool:
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return True
        return False

    async def follow(self, media_id: str, start: Offsets) -> AsyncIterator[MediaState]:
        """States of one media after `start`, as each event about it arrives."""
        for tp, offset in start.items():
            self.consumer.seek(tp, offset)
        while True:
            if await self._poll() and media_id in self.states:
                yield self.states[media_id]

    async def _poll(self) -> bool:
        batches = await self.consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                self._fold(self.kinds[tp.topic], record.value, record.timestamp)
        return bool(batches)

    def _fold(self, kind: str, value: bytes | None, timestamp: int) -> None:
        try:
            data = json.loads(value or b"")
        except ValueError:
            return  # dead-lettered by ingest; nothing to fold
        if not isinstance(data, dict):
            return
        media_id = data.get("media_id") or (
            media_id_for_url(data["url"]) if isinstance(data.get("url"), str) else None
        )
        if not isinstance(media_id, str):
            return
        state = self.states.setdefault(media_id, MediaState(media_id))
        state.source_url = state.source_url or data.get("url") or data.get("source_url")
        _FOLDS[kind](state, data, timestamp)


def _requested(state: MediaState, _: dict[str, Any], at: int) -> None:
    state.requested_at = max(state.requested_at, at)


def _audio(state: MediaState, data: dict[str, Any], _: int) -> None:
    state.audio.add(int(data.get("seq", 0)))
    state.chunk_count = data.get("chunk_count") or state.chunk_count


def _transcript(state: MediaState, data: dict[str, Any], _: int) -> None:
    state.transcribed.add(int(data.get("seq", 0)))
    state.chunk_count = data.get("chunk_count") or state.chunk_count


def _indexed(state: MediaState, data: dict[str, Any], at: int) -> None:
    state.indexed_at = max(state.indexed_at, at)
    state.chunk_count = data.get("chunk_count") or state.chunk_count


def _failed(state: MediaState, data: dict[str, Any], at: int) -> None:
    if at >= state.failed_at:
        state.failed_at = at
        state.failure = {k: str(data.get(k, "")) for k in ("stage", "reason", "detail")}


_FOLDS = {
    "requested": _requested,
    "audio": _audio,
    "transcript": _transcript,
    "indexed": _indexed,
    "failed": _failed,
}

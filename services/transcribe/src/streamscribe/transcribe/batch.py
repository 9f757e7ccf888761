"""Batched decoding: the chunks of up to N `media.audio` messages decoded as one batch.

The subscriber consumes batches (FastStream's batch subscriber: up to `batch_size` records per
poll). Each record of a batch still goes through the stage's delivery policy on its own
(`Delivery.settlements`), concurrently, so each has its own outcome (transcript, `media.failed`,
retry or dead letter); the work of each reaches `Batcher.transcribe` with its decoded audio,
and once every message of the batch has either arrived there or finished otherwise, their
chunks are decoded in one call (`Transcriber.transcribe_chunks`). The offsets are committed
once, after every message of the batch has its outcome acknowledged: a crash anywhere before
redelivers the whole batch, and the transcripts already published are published again (the
ledger counts a chunk once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from streamscribe.common.events import AudioChunk
from streamscribe.transcribe.transcriber import Transcriber, Transcription

# What one more window in a batch costs above the one-chunk path: its beams in the batched beam
# search (the encoder and the alignment run a window at a time, as on the one-chunk path).
# Measured with tiny.en int8 at beam 5: 21 to 27 MB per extra window (bench.transcribers, batch
# 1, 4 and 8); this rounds up.
BEAM_BYTES = 5 * 2**20
WINDOW_BASE_BYTES = 6 * 2**20
# One Ogg/Opus 30 s chunk as a base64 JSON message, rounded up: the prefetch a batch needs.
CHUNK_MESSAGE_BYTES = 128 * 2**10

_Waiting = tuple[AudioChunk, np.ndarray, "asyncio.Future[Transcription]"]


def fetch_bytes(batch_size: int, least: int) -> int:
    """What the consumer may prefetch: enough for a whole batch, never less than `least`."""
    return max(least, batch_size * CHUNK_MESSAGE_BYTES)


def window_bytes(beam_size: int) -> int:
    """What one more window in a batch costs, at this beam width."""
    return WINDOW_BASE_BYTES + beam_size * BEAM_BYTES


def admitted_batch(batch_size: int, pause: int | None, used: int, beam_size: int) -> int:
    """The largest batch, up to `batch_size`, whose extra windows fit between `used` (the model,
    one chunk's inference) and the memory pause mark; no ceiling: `batch_size`."""
    if pause is None:
        return batch_size
    return max(1, min(batch_size, 1 + max(pause - used, 0) // window_bytes(beam_size)))


class Batcher:
    """Gathers the chunks of the messages in hand and decodes them together, off the loop."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber
        self._open = 0  # messages of the current batch still working
        self._waiting: list[_Waiting] = []
        self._decoding: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def transcribe(self, chunk: AudioChunk, audio: np.ndarray) -> Transcription:
        """The chunk's transcription, decoded with the others of its batch."""
        if self._open <= 1:
            return await asyncio.to_thread(self._transcriber.transcribe_chunk, chunk, audio)
        future: asyncio.Future[Transcription] = asyncio.get_running_loop().create_future()
        self._waiting.append((chunk, audio, future))
        self._flush_if_ready()
        return await future

    async def run(self, works: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run one batch's works concurrently; their chunks are decoded once all are in."""
        self._open = len(works)

        async def one(work: Callable[[], Awaitable[None]]) -> None:
            try:
                await work()
            finally:
                self._open -= 1
                self._flush_if_ready()

        await asyncio.gather(*(one(work) for work in works))

    def _flush_if_ready(self) -> None:
        if self._waiting and len(self._waiting) >= self._open:
            waiting, self._waiting = self._waiting, []
            task = asyncio.get_running_loop().create_task(self._decode(waiting))
            self._decoding.add(task)
            task.add_done_callback(self._decoding.discard)

    async def _decode(self, waiting: list[_Waiting]) -> None:
        transcriber = self._transcriber
        items = [(chunk, audio) for chunk, audio, _ in waiting]
        try:
            results = await asyncio.to_thread(transcriber.transcribe_chunks, items)
        except Exception:
            # one bad chunk must not fail the others: each on its own, with its own outcome
            for chunk, audio, future in waiting:
                try:
                    result = await asyncio.to_thread(transcriber.transcribe_chunk, chunk, audio)
                except Exception as exc:
                    _settle(future, exc)
                else:
                    _settle(future, result)
            return
        for (_, _, future), result in zip(waiting, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[Transcription], outcome: Transcription | Exception) -> None:
    """Hand a waiting message its outcome, unless it stopped waiting (cancelled at shutdown)."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

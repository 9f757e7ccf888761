"""The batcher: the chunks of a batch's messages meet in one decode; sizes follow memory."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from faststream.kafka import KafkaBroker

from streamscribe.common.errors import MediaError, Reason
from streamscribe.common.events import AudioChunk
from streamscribe.transcribe.batch import (
    CHUNK_MESSAGE_BYTES,
    Batcher,
    admitted_batch,
    fetch_bytes,
    window_bytes,
)
from streamscribe.transcribe.handlers import AUDIO_FETCH_BYTES, router
from streamscribe.transcribe.settings import TranscribeSettings
from streamscribe.transcribe.transcriber import Transcription


def chunk(seq: int) -> AudioChunk:
    return AudioChunk(
        media_id="m-1", seq=seq, start=seq * 30.0, end=seq * 30.0 + 30, source_url="http://e/a",
        audio=b"OggS",
    )  # fmt: skip


class FakeTranscriber:
    def __init__(self, fail_batches: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.singles: list[int] = []
        self.fail_batches = fail_batches

    def transcribe_chunks(self, items: list[tuple[AudioChunk, Any]]) -> list[Transcription]:
        self.batches.append([c.seq for c, _ in items])
        if self.fail_batches:
            raise RuntimeError("the batch failed")
        return [Transcription(language=str(c.seq), segments=[]) for c, _ in items]

    def transcribe_chunk(self, item: AudioChunk, audio: Any) -> Transcription:
        self.singles.append(item.seq)
        if item.seq == 2:
            raise MediaError(Reason.TRANSCRIBE_ERROR, "this one is bad")
        return Transcription(language=str(item.seq), segments=[])


async def run_batch(fake: FakeTranscriber, seqs: list[int], refused: set[int]) -> dict[int, str]:
    batcher = Batcher(fake)  # type: ignore[arg-type]
    outcomes: dict[int, str] = {}

    def work(seq: int) -> Any:
        async def one() -> None:
            await asyncio.sleep(0.01 * seq)  # messages arrive at different times
            if seq in refused:
                outcomes[seq] = "refused"  # fails before decoding: never joins the batch
                return
            try:
                result = await batcher.transcribe(chunk(seq), np.zeros(10, np.float32))
                outcomes[seq] = result.language
            except MediaError:
                outcomes[seq] = "failed"

        return one

    await asyncio.wait_for(batcher.run([work(seq) for seq in seqs]), 10)
    return outcomes


async def test_the_chunks_of_a_batch_are_decoded_in_one_call() -> None:
    fake = FakeTranscriber()
    outcomes = await run_batch(fake, [0, 1, 2, 3], refused={2})
    assert fake.batches == [[0, 1, 3]]
    assert fake.singles == []
    assert outcomes == {0: "0", 1: "1", 2: "refused", 3: "3"}


async def test_a_failed_batch_gives_each_chunk_its_own_outcome() -> None:
    fake = FakeTranscriber(fail_batches=True)
    outcomes = await run_batch(fake, [0, 1, 2], refused=set())
    assert fake.batches == [[0, 1, 2]]
    assert outcomes == {0: "0", 1: "1", 2: "failed"}


async def test_one_message_alone_takes_the_one_chunk_path() -> None:
    fake = FakeTranscriber()
    assert await run_batch(fake, [5], refused=set()) == {5: "5"}
    assert fake.batches == []
    assert fake.singles == [5]


def test_the_batch_fits_under_the_pause_mark() -> None:
    assert admitted_batch(8, None, 10**9, 5) == 8  # no ceiling
    assert admitted_batch(8, 10**9, 10**9 + 1, 5) == 1  # no room: one at a time
    assert admitted_batch(8, 3 * window_bytes(5), 0, 5) == 4
    assert admitted_batch(8, 3 * window_bytes(5), 0, 1) > 4  # a narrower beam costs less
    assert admitted_batch(2, 100 * window_bytes(5), 0, 5) == 2
    assert 27 * 10**6 <= window_bytes(5) <= 40 * 10**6  # measured: 21 to 27 MB at beam 5


def test_the_consumer_prefetches_a_batch_and_no_more() -> None:
    assert fetch_bytes(1, AUDIO_FETCH_BYTES) == AUDIO_FETCH_BYTES
    assert fetch_bytes(8, AUDIO_FETCH_BYTES) == 8 * CHUNK_MESSAGE_BYTES


@pytest.mark.parametrize("size", [1, 4])
def test_a_batch_size_above_one_makes_a_batch_subscriber(size: int) -> None:
    broker = KafkaBroker("127.0.0.1:1")
    settings = TranscribeSettings.model_validate({"transcribe": {"batch_size": size}})
    broker.include_router(router(settings))
    [audio] = [s for s in broker.subscribers if s.topic_names == [settings.topics.audio]]
    [retry] = [s for s in broker.subscribers if s.topic_names == [settings.topics.audio + ".retry"]]
    assert type(audio).__name__ == ("BatchSubscriber" if size > 1 else "DefaultSubscriber")
    assert type(retry).__name__ == "DefaultSubscriber"
    assert audio._connection_args["fetch_max_bytes"] == fetch_bytes(size, AUDIO_FETCH_BYTES)


async def test_a_message_that_stops_waiting_does_not_stall_the_others() -> None:
    class Slow(FakeTranscriber):
        def transcribe_chunks(self, items: list[tuple[AudioChunk, Any]]) -> list[Transcription]:
            time.sleep(0.3)
            return super().transcribe_chunks(items)

    batcher = Batcher(Slow())  # type: ignore[arg-type]
    outcomes: dict[int, str] = {}

    def work(seq: int, patience: float) -> Any:
        async def one() -> None:
            try:
                result = await asyncio.wait_for(
                    batcher.transcribe(chunk(seq), np.zeros(10, np.float32)), patience
                )
                outcomes[seq] = result.language
            except TimeoutError:
                outcomes[seq] = "gave up"

        return one

    await asyncio.wait_for(batcher.run([work(0, 0.05), work(1, 5)]), 10)
    assert outcomes == {0: "gave up", 1: "1"}

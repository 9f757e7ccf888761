"""Batched decoding: chunks decoded as one beam search come out as they do one by one."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamscribe.common.audio import decode_chunk
from streamscribe.common.events import AudioChunk
from streamscribe.ingest.chunk_source import MediaRef, publish_file
from streamscribe.ingest.settings import IngestSection
from streamscribe.transcribe.transcriber import Transcriber
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration


def chunk_events(speech: Speech) -> list[AudioChunk]:
    events: list[AudioChunk] = []

    async def send(event: AudioChunk) -> None:
        events.append(event)

    section = IngestSection(chunk_min_seconds=10, chunk_max_seconds=14)
    asyncio.run(publish_file(speech.path, MediaRef("f-batch", "file:speech"), section, send))
    return events


def test_a_batch_transcribes_each_chunk_as_one_at_a_time_does(
    transcriber: Transcriber, speech: Speech, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = chunk_events(speech)[:5]
    assert len(events) == 5
    items = [(event, decode_chunk(event.audio)) for event in events]
    one_by_one = [transcriber.transcribe_chunk(event, audio) for event, audio in items]
    # a chunk of silence in the batch, and the batch in another order
    silence = (events[0].model_copy(update={"seq": 99}), items[0][1] * 0.0)
    encode = transcriber.model.encode
    encoded: list[int] = []
    searched: list[int] = []

    def counted(features: np.ndarray) -> object:
        encoded.append(1 if features.ndim == 2 else features.shape[0])
        return encode(features)

    monkeypatch.setattr(transcriber.model, "encode", counted)
    monkeypatch.setattr(transcriber.model, "model", _Searches(transcriber.model.model, searched))
    batched = transcriber.transcribe_chunks([silence, *reversed(items)])
    assert searched == [5], "one beam search for the five chunks of speech, none for the silence"
    assert encoded == [1] * 5, "the encoder runs a window at a time (its memory grows per window)"
    assert batched[0].segments == []
    assert batched[1:] == list(reversed(one_by_one))
    assert all(result.segments for result in one_by_one)


class _Searches:
    """The CTranslate2 model, counting the windows of each beam search (`generate` call)."""

    def __init__(self, model: object, searched: list[int]) -> None:
        self._model = model
        self._searched = searched

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def generate(self, encoded: object, prompts: list[list[int]], **options: object) -> object:
        self._searched.append(len(prompts))
        return self._model.generate(encoded, prompts, **options)  # type: ignore[attr-defined]

"""The one-decode-per-window transcriber on known speech: accuracy, sentence times, windows."""

from __future__ import annotations

import logging
from pathlib import Path

import jiwer
import pytest

from streamscribe.common.audio import decode_chunk as decode
from streamscribe.ingest.chunker import ChunkLimits, chunk_file
from streamscribe.transcribe.transcriber import Transcriber, Transcription
from tests.integration.speech import Speech, words

pytestmark = pytest.mark.integration


def _transcribe_chunks(transcriber: Transcriber, path: Path) -> list[Transcription]:
    return [
        transcriber.transcribe(decode(chunk.audio), chunk.start, None)
        for chunk in chunk_file(path, ChunkLimits(26, 30))
    ]


def test_each_chunk_is_one_window_with_sentence_times(
    transcriber: Transcriber, speech: Speech, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="faster_whisper"):
        chunks = _transcribe_chunks(transcriber, speech.path)
    segments = [segment for chunk in chunks for segment in chunk.segments]

    hypothesis = " ".join(segment.text for segment in segments)
    assert jiwer.wer(words(speech.text), words(hypothesis)) <= 0.15
    # every spoken sentence starts a segment within a second of when it is spoken
    starts = [segment.start for segment in segments]
    assert all(min(abs(s - spoken) for s in starts) <= 1.0 for spoken in speech.starts)
    # every segment carries its words, inside it and in time order, times in milliseconds
    for segment in segments:
        assert segment.words, segment
        assert segment.start <= segment.words[0].start
        assert segment.words[-1].end <= segment.end
        assert all(a.end <= b.start for a, b in zip(segment.words, segment.words[1:], strict=False))
        assert all(round(w.start, 3) == w.start for w in segment.words)
    assert " ".join(w.word for s in segments for w in s.words or []) == hypothesis
    # faster-whisper's seeking logs each window it decodes, about 1.5 per chunk; here only the
    # chunks whose text came out unpunctuated go through it
    assert caplog.text.count("Processing segment") <= len(chunks) // 2


def test_a_chunk_longer_than_a_window_is_transcribed_whole(
    transcriber: Transcriber, speech: Speech
) -> None:
    chunk = next(iter(chunk_file(speech.path, ChunkLimits(70, 75))))
    result = transcriber.transcribe(decode(chunk.audio), chunk.start, None)
    spoken = [start for start in speech.starts if start < chunk.end - 5]
    assert result.segments[-1].end > 60  # past the first window
    assert len(result.segments) >= len(spoken) - 1
    assert all(segment.words for segment in result.segments)  # faster-whisper's seeking too

"""How aligned words become segments: sentences, capped in length, times made absolute."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.transcribe.transcriber import (
    MAX_SEGMENT_SECONDS,
    Transcriber,
    Transcription,
    _has_sentences,
    _sentences,
)


def word(text: str, start: float, end: float) -> dict[str, Any]:
    return {"word": text, "start": start, "end": end, "probability": 0.9}


def test_words_split_into_sentences_at_their_end_marks() -> None:
    words = [
        word(" The", 0.0, 0.3),
        word(" train", 0.3, 0.8),
        word(" left.", 0.8, 1.4),
        word(" Did", 2.0, 2.2),
        word(" it?", 2.2, 2.6),
        word(" Yes", 3.0, 3.3),
    ]
    segments = list(_sentences(words, offset=60.0))
    assert [(s.start, s.end, s.text) for s in segments] == [
        (60.0, 61.4, "The train left."),
        (62.0, 62.6, "Did it?"),
        (63.0, 63.3, "Yes"),
    ]


def test_unpunctuated_speech_is_cut_before_segments_grow_too_long() -> None:
    words = [word(f" w{i}", float(i), i + 0.8) for i in range(30)]
    segments = list(_sentences(words, offset=0.0))
    assert len(segments) > 1
    assert all(s.end - s.start <= MAX_SEGMENT_SECONDS for s in segments)
    assert " ".join(s.text for s in segments).split() == [f"w{i}" for i in range(30)]


def test_no_words_and_blank_words_give_no_segments() -> None:
    assert list(_sentences([], offset=0.0)) == []
    assert list(_sentences([word(" ", 0.0, 0.1)], offset=0.0)) == []


def test_long_unpunctuated_text_is_not_taken_as_sentences() -> None:
    spoken = [word(f" w{i}", float(i), i + 0.8) for i in range(30)]
    assert not _has_sentences(spoken)
    assert _has_sentences(spoken[:10])  # one segment is enough
    assert _has_sentences([*spoken[:14], word(" end.", 14.0, 14.5), *spoken[15:]])


class _TailSpy(Transcriber):
    """A transcriber without a model: what it would decode after the words heard."""

    def __init__(self) -> None:  # no model: only `_from_words` runs
        self.tails: list[tuple[float, float]] = []

    def _transcribe_window(
        self, audio: np.ndarray, offset: float, language: str | None, seek: bool = True
    ) -> Transcription:
        assert not seek, "the rest is decoded once, not again and again"
        self.tails.append((offset, len(audio) / SAMPLE_RATE))
        return Transcription("en", list(_sentences([word(" Hikers.", 0.5, 1.5)], offset)))


def _sound(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


HEARD = [word(" The", 0.0, 0.5), word(" radio.", 0.5, 4.0)]
# as the alignment gives them: the closing mark takes the audio left, unheard speech included
STRETCHED = [word(" The", 0.0, 0.5), word(" radio", 0.5, 4.0), word(".", 4.0, 7.5)]


def test_sound_after_the_last_word_heard_is_decoded_once_more() -> None:
    spy = _TailSpy()
    audio = np.concatenate([_sound(4.0), _silence(0.5), _sound(3.0), _silence(0.5)])
    result = spy._from_words(HEARD, audio, 100.0, "en")
    assert spy.tails == [(104.0, 4.0)]  # from the last word's end, times absolute
    assert [s.text for s in result.segments] == ["The radio.", "Hikers."]
    assert result.segments[-1].start == 104.5
    spy = _TailSpy()
    spy._from_words(STRETCHED, audio, 100.0, "en")
    assert spy.tails == [(104.0, 4.0)]  # from the mark's start, not its stretched end


def test_silence_or_a_short_pause_after_the_last_word_is_not_decoded() -> None:
    for rest in (_silence(6.0), _sound(1.0), np.concatenate([_silence(3.0), 1e-3 * _sound(2.0)])):
        spy = _TailSpy()
        result = spy._from_words(HEARD, np.concatenate([_sound(4.0), rest]), 0.0, "en")
        assert spy.tails == []
        assert [s.text for s in result.segments] == ["The radio."]

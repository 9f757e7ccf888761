"""How aligned words become segments: sentences, capped in length, times made absolute."""

from __future__ import annotations

from typing import Any

from streamscribe.transcribe.transcriber import MAX_SEGMENT_SECONDS, _has_sentences, _sentences


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

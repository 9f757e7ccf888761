"""Transcript export: exact SRT and WebVTT text, JSON that parses back, streamed piece by piece."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from streamscribe.common.events import Segment
from streamscribe.embed.transcript_format import About, Format, render, timestamp

SEGMENTS = [
    Segment(start=0.0, end=2.5, text=" Hello   and welcome. "),
    Segment(start=3661.0456, end=3663.9999, text="Fish & <chips>, 5 > 3"),
]


def test_srt() -> None:
    assert "".join(render(SEGMENTS, "srt")) == (
        "1\n"
        "00:00:00,000 --> 00:00:02,500\n"
        "Hello and welcome.\n"
        "\n"
        "2\n"
        "01:01:01,046 --> 01:01:04,000\n"
        "Fish & <chips>, 5 > 3\n"
        "\n"
    )


def test_vtt_escapes_markup() -> None:
    assert "".join(render(SEGMENTS, "vtt")) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:02.500\n"
        "Hello and welcome.\n"
        "\n"
        "01:01:01.046 --> 01:01:04.000\n"
        "Fish &amp; &lt;chips&gt;, 5 &gt; 3\n"
        "\n"
    )


def test_txt_is_one_line_per_segment() -> None:
    assert list(render(SEGMENTS, "txt")) == ["Hello and welcome.\n", "Fish & <chips>, 5 > 3\n"]


def test_json_parses_back() -> None:
    about = About(media_id="m1", language="en", source="asr")
    parsed = json.loads("".join(render(SEGMENTS, "json", about)))

    assert parsed == {
        "media_id": "m1",
        "language": "en",
        "source": "asr",
        "segments": [
            {"start": 0.0, "end": 2.5, "text": "Hello and welcome."},
            {"start": 3661.046, "end": 3664.0, "text": "Fish & <chips>, 5 > 3"},
        ],
    }
    assert json.loads("".join(render([], "json")))["segments"] == []


def test_blank_segments_are_skipped_and_numbering_stays_contiguous() -> None:
    segments = [SEGMENTS[0], Segment(start=2.5, end=3.0, text="  "), SEGMENTS[1]]

    assert "".join(render(segments, "srt")) == "".join(render(SEGMENTS, "srt"))


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json", "txt"])
def test_rendering_streams_reading_two_segments_ahead_at_most(fmt: Format) -> None:
    """A cue is held back until the next one's start is known: two segments of look-ahead."""
    pulled: list[float] = []

    def source() -> Iterator[Segment]:
        for i in range(10_000):
            pulled.append(i * 5.0)
            yield Segment(start=i * 5.0, end=i * 5.0 + 3, text=f"Sentence number {i}.")

    pieces = render(source(), fmt)
    next(pieces)
    next(pieces)
    assert len(pulled) <= 4


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(SEGMENTS, "pdf")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "00:00:00,000"), (59.9996, "00:01:00,000"), (36000.001, "10:00:00,001")],
)
def test_timestamp_rounds_to_the_millisecond(seconds: float, expected: str) -> None:
    assert timestamp(seconds, ",") == expected

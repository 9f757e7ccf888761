"""Render a media's segments as txt, SRT, WebVTT or JSON, piece by piece.

The pieces concatenate to the whole document, so a caller can write a three-hour transcript to
a file or a pipe without holding it in memory. Segments with blank text are skipped (an empty
cue would end an SRT/VTT block early). SRT and WebVTT cues are cut from the words for reading
(`subtitles.py`); txt has one line per segment; JSON has every segment with its words, times in
milliseconds, under the transcript's language and source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from streamscribe.common.events import Segment
from streamscribe.common.vocabulary import FORMATS, Format
from streamscribe.embed.subtitles import Cue, cues


@dataclass(frozen=True)
class About:
    """What the JSON export says of the transcript as a whole."""

    media_id: str | None = None
    language: str | None = None
    source: str | None = None


def render(segments: Iterable[Segment], fmt: Format, about: About | None = None) -> Iterator[str]:
    """The document in `fmt`, as lines (txt), cues (srt, vtt) or segments (json)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}")
    spoken = (segment for segment in segments if segment.text.strip())
    if fmt == "txt":
        return (" ".join(segment.text.split()) + "\n" for segment in spoken)
    if fmt == "srt":
        return _srt(cues(spoken))
    if fmt == "vtt":
        return _vtt(cues(spoken))
    return _json(spoken, about or About())


def _srt(cues: Iterable[Cue]) -> Iterator[str]:
    for number, cue in enumerate(cues, start=1):
        span = f"{timestamp(cue.start, ',')} --> {timestamp(cue.end, ',')}"
        yield f"{number}\n{span}\n{cue.text}\n\n"


def _vtt(cues: Iterable[Cue]) -> Iterator[str]:
    yield "WEBVTT\n\n"
    for cue in cues:
        span = f"{timestamp(cue.start, '.')} --> {timestamp(cue.end, '.')}"
        # cue text is markup in WebVTT: a bare "<" or "&" would be read as a tag or an entity
        escaped = cue.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        yield f"{span}\n{escaped}\n\n"


def _json(segments: Iterable[Segment], about: About) -> Iterator[str]:
    head = {"media_id": about.media_id, "language": about.language, "source": about.source}
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "segments": ['
    separator = "\n"
    for segment in segments:
        yield separator + "  " + json.dumps(segment_json(segment), ensure_ascii=False)
        separator = ",\n"
    yield "]}\n" if separator == "\n" else "\n]}\n"


def segment_json(segment: Segment) -> dict[str, Any]:
    """A segment for the JSON export: whitespace collapsed, times in milliseconds."""
    element: dict[str, Any] = {
        "start": _ms(segment.start),
        "end": _ms(segment.end),
        "text": " ".join(segment.text.split()),
    }
    if segment.words:
        element["words"] = [
            {"start": _ms(w.start), "end": _ms(w.end), "word": w.word,
             "probability": round(w.probability, 3)}
            for w in segment.words
        ]  # fmt: skip
    return element


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def timestamp(seconds: float, decimal: str) -> str:
    """`HH:MM:SS<decimal>mmm`, rounded to the millisecond."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"

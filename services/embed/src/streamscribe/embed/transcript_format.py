"""Render a media's segments as txt, SRT, WebVTT or JSON, piece by piece.

The pieces concatenate to the whole document, so a caller can write a three-hour transcript to
a file or a pipe without holding it in memory. Segments with blank text are skipped (an empty
cue would end an SRT/VTT block early).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Literal

from streamscribe.common.events import Segment

Format = Literal["txt", "srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = ("txt", "srt", "vtt", "json")


def render(segments: Iterable[Segment], fmt: Format) -> Iterator[str]:
    """The document in `fmt`, as lines (txt) or blocks (srt, vtt, json elements)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}")
    texts = ((segment, " ".join(segment.text.split())) for segment in segments)
    cues = ((segment, text) for segment, text in texts if text)
    if fmt == "txt":
        return (text + "\n" for _, text in cues)
    if fmt == "srt":
        return _srt(cues)
    if fmt == "vtt":
        return _vtt(cues)
    return _json(cues)


def _srt(cues: Iterable[tuple[Segment, str]]) -> Iterator[str]:
    for number, (segment, text) in enumerate(cues, start=1):
        span = f"{timestamp(segment.start, ',')} --> {timestamp(segment.end, ',')}"
        yield f"{number}\n{span}\n{text}\n\n"


def _vtt(cues: Iterable[tuple[Segment, str]]) -> Iterator[str]:
    yield "WEBVTT\n\n"
    for segment, text in cues:
        span = f"{timestamp(segment.start, '.')} --> {timestamp(segment.end, '.')}"
        # cue text is markup in WebVTT: a bare "<" or "&" would be read as a tag or an entity
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        yield f"{span}\n{escaped}\n\n"


def _json(cues: Iterable[tuple[Segment, str]]) -> Iterator[str]:
    separator = "[\n"
    for segment, text in cues:
        element = {"start": segment.start, "end": segment.end, "text": text}
        yield separator + "  " + json.dumps(element, ensure_ascii=False)
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


def timestamp(seconds: float, decimal: str) -> str:
    """`HH:MM:SS<decimal>mmm`, rounded to the millisecond."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"

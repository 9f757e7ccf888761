"""A media's own captions instead of speech recognition: which track to take, its text cleaned,
and the transcript chunks made of it.

yt-dlp lists a media's captions while probing: `subtitles` (written by people: a site's manual
captions, an HTML page's `<track kind="captions">`) and `automatic_captions` (a site's speech
recognition, taken only when a setting allows). The track is read through the job's egress proxy
like any page, so the URL policy and the byte caps hold for it too.

Cleaning: WebVTT and SRT markup (`<b>`, `<v Speaker>`, `<00:01.000>` word times, `{\\an8}`,
entities) goes, and so do the rolling duplicates of automatic captions, where each cue repeats
the line before it and adds a few words.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamscribe.common.events import Segment

# Formats this module reads, best first (yt-dlp lists a track in several on some sites).
_FORMATS = ("vtt", "srt")
_TIMING = re.compile(
    r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})"
)
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")
MAX_CUES = 200_000
"""More cues than any real track has (a cue per second for 55 hours): a hostile track stops."""


class CaptionsMode(StrEnum):
    """Whether a media's own captions replace speech recognition."""

    PREFER = "prefer"  # captions when there are some in the wanted language, else the audio
    NEVER = "never"  # always the audio
    ONLY = "only"  # captions or fail with no_captions


@dataclass(frozen=True)
class Track:
    """A caption track chosen for download."""

    language: str
    url: str
    ext: str
    automatic: bool


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def choose_track(info: dict[str, Any], language: str, automatic: bool) -> Track | None:
    """Manual captions in `language` (or a regional variant: en-GB for en) first, then, if
    allowed, automatic ones; None if the media has neither."""
    kinds = [("subtitles", False)] + ([("automatic_captions", True)] if automatic else [])
    for key, is_automatic in kinds:
        tracks = info.get(key) or {}
        for code in sorted(tracks, key=lambda c: (c != language, c)):
            if _base(code) != language:
                continue
            for fmt in _FORMATS:
                for entry in tracks[code] or []:
                    if entry.get("ext") == fmt and entry.get("url"):
                        return Track(_base(code), str(entry["url"]), fmt, is_automatic)
    return None


def _base(code: str) -> str:
    """`en` of `en-GB`, `en_US` or `en`; captions named `en-orig` and the like are `en` too."""
    return re.split(r"[-_]", code.lower(), maxsplit=1)[0]


def parse(text: str) -> list[Cue]:
    """The cues of a WebVTT or SRT document, text cleaned, rolling duplicates removed."""
    return list(_without_repeats(_cues(text.replace("\r\n", "\n").replace("\r", "\n"))))


def _cues(text: str) -> Iterator[Cue]:
    lines = text.split("\n")
    index = 0
    count = 0
    while index < len(lines) and count < MAX_CUES:
        timing = _TIMING.match(lines[index])
        index += 1
        if timing is None:
            continue
        body = []
        while index < len(lines) and lines[index].strip():
            body.append(lines[index])
            index += 1
        start, end = _seconds(timing.group(1)), _seconds(timing.group(2))
        cleaned = [_clean(line) for line in body]
        if end > start and any(cleaned):
            count += 1
            yield Cue(start, end, "\n".join(line for line in cleaned if line))


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return round(seconds, 3)


def _clean(line: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", line)).split())


def _without_repeats(cues: Iterator[Cue]) -> Iterator[Cue]:
    """Automatic captions roll: each cue shows the previous line again, then new words (and a
    10 ms cue repeats a line alone). Only the new words are kept, timed with their cue."""
    previous = ""  # the last line of the cue before, as it was shown
    for cue in cues:
        fresh = []
        for line in cue.text.split("\n"):
            if line == previous:
                continue
            if previous and line.startswith(previous + " "):
                line = line[len(previous) + 1 :]
            fresh.append(line)
        if fresh:
            yield Cue(cue.start, cue.end, " ".join(fresh))
        previous = cue.text.split("\n")[-1]


def chunks(cues: list[Cue], max_seconds: float) -> list[tuple[float, float, list[Segment]]]:
    """Cues grouped into transcript chunks of about `max_seconds` each: (start, end, segments),
    one segment per cue, so a chunk is what transcribe would have sent for that stretch."""
    grouped: list[tuple[float, float, list[Segment]]] = []
    for cue in cues:
        segment = Segment(start=cue.start, end=cue.end, text=cue.text)
        if grouped and cue.start - grouped[-1][0] < max_seconds:
            start, end, segments = grouped[-1]
            grouped[-1] = (start, max(end, cue.end), [*segments, segment])
        else:
            grouped.append((cue.start, cue.end, [segment]))
    return grouped

"""Speech coverage: nothing said is dropped silently (docs/design.md, decision 13).

After a chunk is decoded and its words kept (those of its own span, not of its lead-in), Silero
VAD (bundled with faster-whisper) says where its audio holds speech. A gap between two kept words
(or between an edge of the chunk's own span and its first or last word) that holds more than
`HOLE_SECONDS` of speech is a hole: the decoder skipped what was said there, or its words were
timed into the lead-in and dropped with it (the alignment gives the first word written all the
audio before it, so a decoder that skipped its lead-in has its own first words timed there).
Each hole is decoded again on its own, with the chunk's words before it as the prompt, and the
words found are merged in by time. What is decoded again and what is still left without words
are counted, per chunk (the transcript event) and per worker (Prometheus).

The speech here is VAD's frames at its own threshold, unpadded and unmerged: a pause between
sentences is not speech, so it is never a hole (the decoding VAD of `vad_filter` pads speech and
keeps pauses up to `vad_min_silence_ms`, which suits deciding what to decode, not this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import get_vad_model

from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.common.events import Segment, Word

# Speech this long with no word is a hole: longer than the gaps word alignment leaves between
# words it times a little short.
HOLE_SECONDS = 1.0
# Words before a hole given as its prompt: enough for the style of the text (numbers written as
# words stay words), far below the prompt's limit (half of Whisper's 448 tokens).
PROMPT_WORDS = 60
_FRAME = 512  # Silero VAD's window at 16 kHz
_THRESHOLD = 0.5  # faster-whisper's VadOptions defaults: speech starts at 0.5, ends below 0.35
_NEG_THRESHOLD = 0.35

Span = tuple[float, float]
# Decodes `audio` (seconds from `offset`, absolute) with `prompt` before it; returns segments.
Decode = Callable[[np.ndarray, float, str], list[Segment]]


@dataclass(frozen=True)
class Coverage:
    """Seconds of speech in the chunk's own span decoded again, and still without words."""

    redecoded: float = 0.0
    uncovered: float = 0.0


@dataclass(frozen=True)
class Hole:
    """A gap between words (absolute seconds) and the seconds of own-span speech it holds."""

    start: float
    end: float
    speech: float


def speech_spans(audio: np.ndarray, offset: float) -> list[Span]:
    """Where Silero VAD hears speech in `audio`, absolute seconds (audio starts at `offset`)."""
    padded = np.pad(audio, (0, _FRAME - audio.size % _FRAME))
    probabilities = np.asarray(get_vad_model()(padded)).reshape(-1)
    return spans_of(probabilities, offset)


def spans_of(probabilities: np.ndarray, offset: float) -> list[Span]:
    """Runs of speech frames: from a frame at `_THRESHOLD` until one below `_NEG_THRESHOLD`."""
    spans: list[Span] = []
    begin: int | None = None
    for index, probability in enumerate(probabilities):
        if begin is None and probability >= _THRESHOLD:
            begin = index
        elif begin is not None and probability < _NEG_THRESHOLD:
            spans.append(_seconds(begin, index, offset))
            begin = None
    if begin is not None:
        spans.append(_seconds(begin, len(probabilities), offset))
    return spans


def _seconds(begin: int, end: int, offset: float) -> Span:
    return (offset + begin * _FRAME / SAMPLE_RATE, offset + end * _FRAME / SAMPLE_RATE)


def holes(words: list[Word], speech: list[Span], own: Span) -> list[Hole]:
    """The gaps between `words` (and the edges of `own`) holding over `HOLE_SECONDS` of
    speech inside `own`."""
    edges = [own[0], *(t for word in words for t in (word.start, word.end)), own[1]]
    found = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        begin, stop = max(start, own[0]), min(end, own[1])
        said = _overlap((begin, stop), speech)
        if said > HOLE_SECONDS:
            found.append(Hole(begin, stop, round(said, 3)))
    return found


def _overlap(span: Span, speech: Iterable[Span]) -> float:
    return sum(max(min(span[1], end) - max(span[0], start), 0.0) for start, end in speech)


def repair(
    segments: list[Segment],
    audio: np.ndarray,
    offset: float,
    own: Span,
    decode: Decode,
) -> tuple[list[Segment], Coverage]:
    """The kept `segments` of `audio` (which starts at `offset`) with every hole in `own` (the
    chunk's own span) decoded again and merged in by time, and what that covered."""
    speech = speech_spans(audio, offset)
    found = holes(_words(segments), speech, own)
    for hole in found:
        piece = audio[_sample(hole.start - offset) : _sample(hole.end - offset)]
        decoded = decode(piece, hole.start, _prompt(segments, hole.start))
        segments = _merged(segments, _inside(decoded, hole, segments), hole)
    left = holes(_words(segments), speech, own)
    redecoded = sum((hole.speech for hole in found), 0.0)
    uncovered = sum((hole.speech for hole in left), 0.0)
    return segments, Coverage(round(redecoded, 3), round(uncovered, 3))


def _sample(seconds: float) -> int:
    return max(round(seconds * SAMPLE_RATE), 0)


def _words(segments: list[Segment]) -> list[Word]:
    return sorted((word for s in segments for word in s.words or []), key=lambda w: w.start)


def _prompt(segments: list[Segment], before: float) -> str:
    words = [word.word for word in _words(segments) if word.end <= before]
    return " ".join(words[-PROMPT_WORDS:])


def _inside(decoded: list[Segment], hole: Hole, segments: list[Segment]) -> list[Segment]:
    """The decoded words whose middle lies in the hole, without a word the decoder heard again
    at the hole's edge (the end of the word before, the start of the word after)."""
    words = [w for w in _words(decoded) if hole.start <= (w.start + w.end) / 2 < hole.end]
    known = _words(segments)
    before = [w for w in known if w.end <= hole.start]
    after = [w for w in known if w.start >= hole.end]
    if words and before and _same(words[0], before[-1]):
        words = words[1:]
    if words and after and _same(words[-1], after[0]):
        words = words[:-1]
    return _grouped(decoded, set(map(id, words)))


def _same(a: Word, b: Word) -> bool:
    return _bare(a.word) == _bare(b.word)


def _bare(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _grouped(decoded: list[Segment], kept: set[int]) -> list[Segment]:
    """The decoded segments with only the kept words (by identity)."""
    out = []
    for segment in decoded:
        words = [word for word in segment.words or [] if id(word) in kept]
        if words:
            out.append(_segment(words))
    return out


def _merged(segments: list[Segment], found: list[Segment], hole: Hole) -> list[Segment]:
    """`segments` split at the hole (a sentence the decoder ran across it), `found` in it."""
    if not found:
        return segments
    pieces: list[Segment] = []
    for segment in segments:
        words = segment.words or []
        before = [word for word in words if word.end <= hole.start]
        after = [word for word in words if word.end > hole.start]
        if not before or not after:
            pieces.append(segment)
        else:
            pieces += [_segment(before), _segment(after)]
    return sorted([*pieces, *found], key=lambda segment: segment.start)


def _segment(words: list[Word]) -> Segment:
    start = words[0].start
    end = max(max(word.end for word in words), start)
    return Segment(start=start, end=end, text=" ".join(w.word for w in words), words=words)

"""Subtitle cues that read well, cut from a transcript's words.

A cue holds at most two lines of at most 42 characters and lasts at most 7 s (the usual
broadcast limits). Cues end where the speech does: at the end of a sentence, at a pause, and,
when a limit forces a cut, at the last comma or pause inside the cue rather than mid-phrase.
A cue stays up at least a second when the next one leaves room, and a cue shorter than that is
merged into a neighbour when the two fit in one. Cues never overlap.

Segments without words (older events, captions) get their words spread over the segment's time
in proportion to their length. Works on a stream: one cue is held back to know the next start.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from streamscribe.common.events import Segment

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 7.0
MIN_CUE_SECONDS = 1.0
PAUSE_SECONDS = 0.4
"""A silence this long between two words is a place to end a cue."""
LONG_PAUSE_SECONDS = 2.0
"""A silence this long always ends a cue: no text stays up over it."""
# with the full-width marks of Chinese and Japanese text
SENTENCE_ENDS = (".", "?", "!", "\u2026", "\u3002", "\uff1f", "\uff01")
CLAUSE_ENDS = (",", ";", ":", "\u2014", "\u2013", "\u3001", "\uff0c")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Token:
    start: float
    end: float
    text: str
    ends_sentence: bool


def cues(segments: Iterable[Segment]) -> Iterator[Cue]:
    """The cues of `segments` (time-ordered), in time order."""
    held: Cue | None = None
    for cue in _raw_cues(_tokens(segments)):
        if held is None:
            held = cue
            continue
        merged = _merge(held, cue) if _short(held) or _short(cue) else None
        if merged is not None:
            held = merged
            continue
        settled = _settle(held, cue.start)
        yield settled
        # words of two chunks may overlap by a few milliseconds: the later cue waits
        held = (
            cue
            if cue.start >= settled.end
            else replace(cue, start=settled.end, end=max(cue.end, settled.end))
        )
    if held is not None:
        yield _settle(held, None)


def wrap(words: list[str]) -> tuple[str, ...] | None:
    """The words on one line, or on two balanced lines; None if they do not fit."""
    text = " ".join(words)
    if len(text) <= MAX_LINE_CHARS:
        return (text,)
    best: tuple[str, str] | None = None
    for cut in range(1, len(words)):
        first, second = " ".join(words[:cut]), " ".join(words[cut:])
        longest = max(len(first), len(second))
        if longest <= MAX_LINE_CHARS and (best is None or longest < max(map(len, best))):
            best = (first, second)
    return best


def _tokens(segments: Iterable[Segment]) -> Iterator[_Token]:
    for segment in segments:
        words = [(w.start, w.end, w.word.strip()) for w in segment.words or [] if w.word.strip()]
        if not words:
            words = _spread(segment)
        for index, (start, end, text) in enumerate(words):
            last = index == len(words) - 1
            end = min(end, start + MAX_CUE_SECONDS)  # a misaligned word must not hold a cue
            for piece_start, piece_end, piece in _pieces(start, end, text):
                yield _Token(piece_start, piece_end, piece, last or piece.endswith(SENTENCE_ENDS))


def _spread(segment: Segment) -> list[tuple[float, float, str]]:
    """Words of a segment without word times, timed in proportion to their length."""
    texts = segment.text.split()
    total = sum(len(text) + 1 for text in texts) or 1
    span = max(segment.end - segment.start, 0.0)
    words, at = [], segment.start
    for text in texts:
        length = span * (len(text) + 1) / total
        words.append((at, at + length, text))
        at += length
    return words


def _pieces(start: float, end: float, text: str) -> Iterator[tuple[float, float, str]]:
    """A word longer than a line (a URL, say) cut into line-long pieces sharing its time."""
    count = -(-len(text) // MAX_LINE_CHARS)
    step = (end - start) / count
    for i in range(count):
        piece = text[i * MAX_LINE_CHARS : (i + 1) * MAX_LINE_CHARS]
        yield start + i * step, start + (i + 1) * step, piece


def _raw_cues(tokens: Iterable[_Token]) -> Iterator[Cue]:
    """Greedy: add words while the cue fits; end it at sentence ends and pauses."""
    current: list[_Token] = []
    for token in tokens:
        if current and _natural_end(current, token):
            yield _cue(current)
            current = []
        while current and not _fits([*current, token]):
            cut = _cut_point(current)
            yield _cue(current[:cut])
            current = current[cut:]
        current.append(token)
    if current:
        yield _cue(current)


def _natural_end(current: list[_Token], following: _Token) -> bool:
    """A sentence has ended and the cue has been up long enough (or a pause follows it), or
    the speaker paused long: better a new cue than one spanning the silence."""
    last = current[-1]
    pause = following.start - last.end
    shown = last.end - current[0].start
    if pause >= LONG_PAUSE_SECONDS:
        return True
    return last.ends_sentence and (shown >= MIN_CUE_SECONDS or pause >= PAUSE_SECONDS)


def _fits(tokens: list[_Token]) -> bool:
    duration = tokens[-1].end - tokens[0].start
    return duration <= MAX_CUE_SECONDS and wrap([t.text for t in tokens]) is not None


def _cut_point(tokens: list[_Token]) -> int:
    """Where to end a full cue: after the last sentence end, clause end or pause that leaves
    the cue up a second or more; else at its end."""
    best, best_rank = len(tokens), 0
    for i in range(1, len(tokens)):
        before, after = tokens[i - 1], tokens[i]
        if before.end - tokens[0].start < MIN_CUE_SECONDS:
            continue
        rank = (
            3 if before.text.endswith(SENTENCE_ENDS)
            else 2 if before.text.endswith(CLAUSE_ENDS)
            else 1 if after.start - before.end >= PAUSE_SECONDS
            else 0
        )  # fmt: skip
        if rank and rank >= best_rank:
            best, best_rank = i, rank
    return best


def _cue(tokens: list[_Token]) -> Cue:
    lines = wrap([t.text for t in tokens])
    assert lines is not None  # _raw_cues only makes cues that fit
    return Cue(tokens[0].start, max(tokens[-1].end, tokens[0].start), lines)


def _short(cue: Cue) -> bool:
    return cue.end - cue.start < MIN_CUE_SECONDS


def _merge(first: Cue, second: Cue) -> Cue | None:
    """One cue of both, if the pair is close in time and fits the limits."""
    if second.start - first.end >= PAUSE_SECONDS:
        return None
    if second.end - first.start > MAX_CUE_SECONDS:
        return None
    lines = wrap(" ".join([*first.lines, *second.lines]).split())
    return None if lines is None else Cue(first.start, second.end, lines)


def _settle(cue: Cue, next_start: float | None) -> Cue:
    """Up for at least a second where the next cue leaves room; never past the next start."""
    end = max(cue.end, cue.start + MIN_CUE_SECONDS)
    if next_start is not None and next_start >= cue.start:
        end = min(end, next_start)
    return replace(cue, end=end)

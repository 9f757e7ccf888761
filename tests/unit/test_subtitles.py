"""Subtitles that read well: SRT and WebVTT parsed back by pysubs2 (a subtitle library from PyPI)
keep the limits (2 lines of 42 characters, 7 s, no overlap, a second on screen where there is
room), every word in order, and cut at punctuation and pauses."""

from __future__ import annotations

import itertools
import json
import random
import re

import pysubs2
import pytest

from streamscribe.common.events import Segment, Word
from streamscribe.embed.subtitles import MAX_CUE_SECONDS, MAX_LINE_CHARS, cues
from streamscribe.embed.transcript_format import render

SPOKEN = (
    "the budget committee met on tuesday and agreed that spending on roads would rise while "
    "the library fund stays where it was last year according to the minutes"
)
VOCABULARY = SPOKEN.split()


def sentence(rng: random.Random, at: float, words: int, pace: float) -> Segment:
    """A sentence of `words` words at `pace` seconds a word, commas here and there."""
    timed = []
    for i in range(words):
        text = rng.choice(VOCABULARY)
        if i == words - 1:
            text += rng.choice(".?!")
        elif rng.random() < 0.12:
            text += ","
        length = pace * rng.uniform(0.6, 1.0)
        timed.append(Word(start=round(at, 3), end=round(at + length, 3), word=text,
                          probability=rng.random()))  # fmt: skip
        at += pace
    text = " ".join(word.word for word in timed)
    return Segment(start=timed[0].start, end=timed[-1].end, text=text, words=timed)


def transcript(seed: int = 7) -> list[Segment]:
    """Long run-on sentences (130 characters, 10 s and more), one-word answers, pauses, a URL."""
    rng = random.Random(seed)
    segments, at = [], 0.0
    for _ in range(60):
        kind = rng.random()
        if kind < 0.2:
            segment = sentence(rng, at, 1, 0.3)  # "yes." in 0.3 s
        elif kind < 0.6:
            segment = sentence(rng, at, rng.randint(20, 40), rng.uniform(0.2, 0.45))
        else:
            segment = sentence(rng, at, rng.randint(3, 12), rng.uniform(0.25, 0.5))
        segments.append(segment)
        at = segment.end + rng.choice([0.05, 0.2, 0.6, 3.0])
    url = "https://example.org/a/very/long/address/that/no/line/can/hold.html"
    segments.append(Segment(start=at, end=at + 2, text=f"See {url} now."))
    return segments


def parse(fmt: str) -> pysubs2.SSAFile:
    return pysubs2.SSAFile.from_string("".join(render(transcript(), fmt)), format_=fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_cues_parse_back_within_the_limits(fmt: str) -> None:
    events = parse(fmt).events
    assert len(events) > 60
    for event in events:
        lines = event.plaintext.split("\n")
        assert 1 <= len(lines) <= 2, event
        assert all(0 < len(line) <= MAX_LINE_CHARS for line in lines), event
        assert event.duration <= MAX_CUE_SECONDS * 1000, event
    for before, after in itertools.pairwise(events):
        assert before.end <= after.start, (before, after)
        # under a second only when the next cue follows at once (the speech was that short)
        assert before.duration >= 1000 or before.end == after.start, (before, after)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_every_word_comes_back_in_order(fmt: str) -> None:
    spoken = " ".join(segment.text for segment in transcript()).split()
    shown = " ".join(event.plaintext.replace("\n", " ") for event in parse(fmt).events)
    assert "".join(shown.split()) == "".join(spoken)  # a URL is cut into line-long pieces


COMMA_SENTENCE = "one two three four five six seven, eight nine ten eleven twelve thirteen"


def test_a_long_sentence_is_cut_after_its_comma() -> None:
    words = COMMA_SENTENCE.split()
    timed = [Word(start=i * 0.6, end=i * 0.6 + 0.5, word=w) for i, w in enumerate(words)]
    segment = Segment(start=0, end=timed[-1].end, text=" ".join(words), words=timed)
    first, second = cues([segment])
    assert first.text.replace("\n", " ") == "one two three four five six seven,"
    assert second.text.replace("\n", " ") == "eight nine ten eleven twelve thirteen"


def test_a_pause_ends_a_cue_and_a_lone_short_word_stays_a_second() -> None:
    hello = Segment(start=0, end=0.4, text="Hello.", words=[Word(start=0, end=0.4, word="Hello.")])
    later = Segment(start=5, end=6.5, text="Back again.")
    shown = list(cues([hello, later]))
    assert [(c.start, c.end, c.text) for c in shown] == [
        (0, 1.0, "Hello."),
        (5, 6.5, "Back again."),
    ]


def test_short_sentences_close_together_share_a_cue() -> None:
    words = [("Yes.", 0.0, 0.3), ("No.", 0.35, 0.6), ("Maybe", 0.7, 1.1), ("so.", 1.1, 1.5)]
    segments = [
        Segment(start=s, end=e, text=w, words=[Word(start=s, end=e, word=w)]) for w, s, e in words
    ]
    assert [c.text for c in cues(segments)] == ["Yes. No. Maybe so."]


def test_json_times_are_milliseconds_and_words_lie_inside_increasing() -> None:
    document = json.loads("".join(render(transcript(), "json")))
    numbers = re.findall(r"\d+\.\d+", "".join(render(transcript(), "json")))
    assert all(len(number.split(".")[1]) <= 3 for number in numbers)
    for segment in document["segments"]:
        words = segment.get("words", [])
        for word in words:
            assert segment["start"] <= word["start"] <= word["end"] <= segment["end"]
            assert 0 <= word["probability"] <= 1
        starts = [word["start"] for word in words]
        assert starts == sorted(starts)
        assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))

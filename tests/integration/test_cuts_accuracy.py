"""The pipeline's path at its cuts, against faster-whisper's `transcribe(path)` on the whole file.

Two kinds of speech. Thirty short paragraphs, each after a clear pause: every cut falls in one.
And long paragraphs of long sentences joined at commas (`LONG_PARAGRAPHS`): a paragraph longer
than a chunk has no clear pause within the chunk limits, so a cut falls inside a sentence and
the next chunk begins with a lead-in; there no speech may be left without words, the word error
rate stays within 0.01 of the whole file decoded window by window, and every paragraph opening
the whole file writes, the pipeline writes.

Speech of thirty short paragraphs, each opening with an ordinal ("First,", "Second," ...) after
a pause, through ingest's chunker (default settings: cuts in the last clear pause, no lead-in
after one) and the transcriber's decoding and word keeping, in process. Cuts must land
in the paragraph pauses (the issue's "Fourth," was lost to a cut right after it, with a 1 s
silence close by), every word must be kept once, and the word error rate must stay near the
whole file's.

The cuts themselves cost nothing measurable: against the whole file decoded as the pipeline
decodes (each window on its own, `condition_on_previous_text=False`), the pipeline is within
the issue's 0.01 (measured from 0.012 better to 0.003 worse on three such files; 0.005 to
0.008 worse with a 3 s lead-in at every cut). faster-whisper's default
conditions each window on the text of the one before, which independent chunks cannot be; on
this speech that is worth 0.03 to 0.045 (it keeps writing "Seventh," where a window decoded
cold writes "7."; see docs/design.md), so the bound against the default stays looser.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path

import jiwer
import pytest

from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.common.audio import decode_chunk as decode
from streamscribe.common.events import AudioChunk, Word
from streamscribe.ingest.chunk_source import chunk_limits, decode_limits
from streamscribe.ingest.publisher import MediaRef, publish_audio
from streamscribe.ingest.settings import IngestSection
from streamscribe.transcribe.coverage import Hole, holes, speech_spans
from streamscribe.transcribe.transcriber import Transcriber
from tests.integration.speech import GAP_SECONDS, SENTENCES, Speech, make_speech, words

pytestmark = pytest.mark.integration

ORDINALS = [
    "First", "Second", "Third", "Fourth", "Fifth",
    "Sixth", "Seventh", "Eighth", "Ninth", "Tenth",
]  # fmt: skip
PARAGRAPHS = [f"{ORDINALS[i % 10]}, {SENTENCES[i].lower()}" for i in range(30)]
JOINS = (", and ", ", while ", ", because ", ", and then ")


def long_paragraphs(sizes: list[int]) -> list[str]:
    """Paragraphs of `sizes` sentences joined at commas (no clear pause inside), each opening
    with an ordinal."""
    paragraphs, used = [], 0
    for index, size in enumerate(sizes):
        said = [s.rstrip(".") for s in SENTENCES[used : used + size]]
        used += size
        body = said[0][0].lower() + said[0][1:]
        for turn, sentence in enumerate(said[1:]):
            body += JOINS[(index + turn) % len(JOINS)] + sentence[0].lower() + sentence[1:]
        paragraphs.append(f"{ORDINALS[index]}, {body}.")
    return paragraphs


# 40 sentences, about 4 minutes: paragraphs of 6 or 7 sentences run past a chunk
LONG_PARAGRAPHS = long_paragraphs([2, 6, 3, 7, 2, 4, 6, 3, 5, 2])
CHUNKING = IngestSection()
# measured: 0.124 to 0.128 against 0.091 to 0.092 (tiny.en, int8, beam 5)
WER_MARGIN = 0.06
# the bound, against the whole file decoded window by window as the pipeline does
CUTS_MARGIN = 0.01


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return make_speech(tmp_path_factory.mktemp("long"), LONG_PARAGRAPHS, "long", repeatable=True)


@pytest.fixture(scope="module")
def ordinal_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return make_speech(tmp_path_factory.mktemp("ordinals"), PARAGRAPHS, "ordinals")


def whole_file(transcriber: Transcriber, path: Path, conditioned: bool = True) -> list[Word]:
    segments, _ = transcriber.model.transcribe(
        str(path), language="en", word_timestamps=True, condition_on_previous_text=conditioned
    )
    return [
        Word(start=w.start, end=w.end, word=w.word.strip())
        for segment in segments
        for w in segment.words or []
    ]


def chunk_events(path: Path) -> list[AudioChunk]:
    events: list[AudioChunk] = []

    async def send(event: AudioChunk) -> None:
        events.append(event)

    limits = decode_limits(CHUNKING, chunk_limits(CHUNKING))
    asyncio.run(publish_audio(path, MediaRef("f-ordinals", f"file:{path.name}"), limits, send))
    return events


def pipeline(transcriber: Transcriber, events: list[AudioChunk]) -> list[Word]:
    return [
        word
        for event in events
        for segment in transcriber.transcribe_chunk(event, decode(event.audio)).segments
        for word in segment.words or []
    ]


def text_of(heard: list[Word]) -> str:
    return words(" ".join(w.word for w in heard))


def test_cuts_fall_in_pauses_and_keep_every_word_once(
    transcriber: Transcriber, ordinal_speech: Speech
) -> None:
    events = chunk_events(ordinal_speech.path)
    assert len(events) >= 6
    # the paragraph pauses are clear: no word straddles a cut, no chunk needs a lead-in
    assert all(event.lead_in == 0.0 for event in events)
    # each cut lies in the pause before a paragraph, not after its first word
    for cut in (event.start for event in events[1:]):
        assert any(0 <= start - cut <= GAP_SECONDS + 0.3 for start in ordinal_speech.starts), cut

    heard = pipeline(transcriber, events)
    assert all(a.start <= b.start for a, b in itertools.pairwise(heard)), "in order"
    doubled = [(a, b) for a, b in itertools.pairwise(heard) if a.word == b.word and b.start < a.end]
    assert not doubled, "a word of the lead-in kept twice"

    truth = words(ordinal_speech.text)
    baseline_wer = jiwer.wer(truth, text_of(whole_file(transcriber, ordinal_speech.path)))
    pipeline_wer = jiwer.wer(truth, text_of(heard))
    assert pipeline_wer <= baseline_wer + WER_MARGIN, (pipeline_wer, baseline_wer)
    cold = whole_file(transcriber, ordinal_speech.path, conditioned=False)
    cold_wer = jiwer.wer(truth, text_of(cold))
    assert pipeline_wer <= cold_wer + CUTS_MARGIN, (pipeline_wer, cold_wer)


@dataclass(frozen=True)
class LongRun:
    """The long paragraphs through the pipeline (chunk by chunk) and decoded whole."""

    events: list[AudioChunk]
    heard: list[Word]
    holes: list[tuple[int, list[Hole]]]  # per chunk: speech over 1 s without words
    uncovered: float  # as the transcriber counted it
    cold: list[Word]  # the whole file, each window on its own


@pytest.fixture(scope="module")
def long_run(transcriber: Transcriber, long_speech: Speech) -> LongRun:
    events = chunk_events(long_speech.path)
    heard: list[Word] = []
    found, uncovered = [], 0.0
    for event in events:
        audio = decode(event.audio)
        result = transcriber.transcribe_chunk(event, audio)
        said = [word for segment in result.segments for word in segment.words or []]
        offset = event.start - event.lead_in
        own = (event.start, min(event.end, offset + audio.size / SAMPLE_RATE))
        found.append((event.seq, holes(said, speech_spans(audio, offset), own)))
        uncovered += result.coverage.uncovered
        heard += said
    cold = whole_file(transcriber, long_speech.path, conditioned=False)
    return LongRun(events, heard, found, uncovered, cold)


def test_no_speech_is_lost_where_cuts_fall_inside_sentences(
    long_run: LongRun, long_speech: Speech
) -> None:
    assert any(event.lead_in for event in long_run.events), "some cut falls inside a sentence"
    # no stretch of speech over 1 s in any chunk's own span is left without words
    assert all(not found for _, found in long_run.holes), long_run.holes
    assert long_run.uncovered == 0.0
    heard = long_run.heard
    assert all(a.start <= b.start for a, b in itertools.pairwise(heard)), "in order"
    truth = words(long_speech.text)
    pipeline_wer = jiwer.wer(truth, text_of(heard))
    cold_wer = jiwer.wer(truth, text_of(long_run.cold))
    assert pipeline_wer <= cold_wer + CUTS_MARGIN, (pipeline_wer, cold_wer)

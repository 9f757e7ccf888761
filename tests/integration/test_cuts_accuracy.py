"""The pipeline's path at its cuts, against faster-whisper's `transcribe(path)` on the whole file.

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
from pathlib import Path

import jiwer
import pytest

from streamscribe.common.audio import decode_chunk as decode
from streamscribe.common.events import AudioChunk, Word
from streamscribe.ingest.chunk_source import chunk_limits, decode_limits
from streamscribe.ingest.publisher import MediaRef, publish_audio
from streamscribe.ingest.settings import IngestSection
from streamscribe.transcribe.transcriber import Transcriber
from tests.integration.speech import GAP_SECONDS, SENTENCES, Speech, make_speech, words

pytestmark = pytest.mark.integration

ORDINALS = [
    "First", "Second", "Third", "Fourth", "Fifth",
    "Sixth", "Seventh", "Eighth", "Ninth", "Tenth",
]  # fmt: skip
PARAGRAPHS = [f"{ORDINALS[i % 10]}, {SENTENCES[i].lower()}" for i in range(30)]
CHUNKING = IngestSection()
# measured: 0.124 to 0.128 against 0.091 to 0.092 (tiny.en, int8, beam 5)
WER_MARGIN = 0.06
# the bound, against the whole file decoded window by window as the pipeline does
CUTS_MARGIN = 0.01


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

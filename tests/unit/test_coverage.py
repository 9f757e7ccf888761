"""Speech coverage: a decoder that skips what was said is caught, the speech decoded again and
merged in by time, and the seconds counted (in the result and in Prometheus)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from prometheus_client import REGISTRY

from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.common.events import AudioChunk, Segment, Word
from streamscribe.transcribe import coverage
from streamscribe.transcribe.coverage import Hole, holes, spans_of
from streamscribe.transcribe.settings import TranscribeSection
from streamscribe.transcribe.transcriber import Transcriber, Transcription

START, LEAD_IN, OWN = 100.0, 3.0, 20.0  # the chunk's own span: 103 to 123 s in the media
STEP = 0.5  # the script says a word every half second, each 0.4 s long


def said(begin: float, end: float) -> list[Word]:
    """The words the script says between `begin` and `end` (absolute seconds)."""
    first = int(np.ceil(round((begin - START) / STEP, 6)))
    times = (START + i * STEP for i in range(first, int((end - START) / STEP) + 1))
    return [Word(start=t, end=t + 0.4, word=f"w{t:g}") for t in times if t + 0.4 <= end]


class SkippingDecoder(Transcriber):
    """A transcriber whose decoder writes what the script says in the audio it is given, except
    in `skipped` on its first pass over the chunk; VAD hears speech in `speech` only."""

    def __init__(self, skipped: tuple[float, float], again: bool = True) -> None:
        self.section = TranscribeSection(vad_filter=False)  # no model: nothing loads
        self.multilingual = False
        self.skipped = skipped
        self.again = again  # whether decoding a hole again finds its words
        self.calls: list[tuple[float, float, str]] = []

    def _transcribe_window(
        self,
        audio: np.ndarray,
        offset: float,
        language: str | None,
        seek: bool = True,
        prompt: str = "",
    ) -> Transcription:
        end = offset + audio.size / SAMPLE_RATE
        self.calls.append((offset, end, prompt))
        words = said(offset, end)
        if len(self.calls) == 1 or not self.again:
            words = [w for w in words if not self.skipped[0] <= w.start < self.skipped[1]]
        if not words:
            return Transcription("en", [])
        text = " ".join(w.word for w in words)
        return Transcription(
            "en", [Segment(start=words[0].start, end=words[-1].end, text=text, words=words)]
        )


@pytest.fixture(autouse=True)
def speech_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """VAD hears speech through the whole chunk but for a pause at 115 to 117 s."""

    def spans(audio: np.ndarray, offset: float) -> list[tuple[float, float]]:
        return [(offset, 115.0), (117.0, offset + audio.size / SAMPLE_RATE)]

    monkeypatch.setattr(coverage, "speech_spans", spans)


def chunk() -> AudioChunk:
    return AudioChunk(
        media_id="m", seq=4, start=START + LEAD_IN, end=START + LEAD_IN + OWN,
        source_url="file:x", audio=b"", lead_in=LEAD_IN, next_lead_in=0.0,
    )  # fmt: skip


def audio() -> np.ndarray:
    return np.zeros(round((LEAD_IN + OWN) * SAMPLE_RATE), dtype=np.float32)


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(f"streamscribe_speech_{name}_seconds_total") or 0.0


def words_of(result: Transcription) -> list[Word]:
    return [word for segment in result.segments for word in segment.words or []]


def test_a_decoder_that_skips_a_chunks_first_seconds_is_caught_and_repaired() -> None:
    decoder = SkippingDecoder(skipped=(START, START + LEAD_IN + 4.0))  # lead-in and 4 s more
    before = counted("redecoded"), counted("uncovered")
    result = decoder.transcribe_chunk(chunk(), audio())
    # the hole, from the chunk's own start to the first word heard, decoded again (no words
    # before it in the chunk's own span: no prompt)
    assert decoder.calls[1:] == [(START + LEAD_IN, START + LEAD_IN + 4.0, "")]
    assert words_of(result) == said(START + LEAD_IN, START + LEAD_IN + OWN)
    assert all(a.end <= b.start for a, b in itertools.pairwise(result.segments))
    assert result.coverage.redecoded == pytest.approx(4.0)
    assert result.coverage.uncovered == 0.0
    assert counted("redecoded") - before[0] == pytest.approx(4.0)
    assert counted("uncovered") - before[1] == 0.0


class PinnedDecoder(SkippingDecoder):
    """A decoder that writes none of the lead-in, as the alignment then times it: the first
    words written take the audio before them, so their middles fall in the lead-in."""

    def _transcribe_window(
        self,
        audio: np.ndarray,
        offset: float,
        language: str | None,
        seek: bool = True,
        prompt: str = "",
    ) -> Transcription:
        result = super()._transcribe_window(audio, offset, language, seek, prompt)
        if len(self.calls) > 1:
            return result
        words = words_of(result)
        pinned = [
            w.model_copy(update={"start": START + i, "end": START + i + 1})
            for i, w in enumerate(words[:3])
        ]
        words = pinned + words[3:]
        text = " ".join(w.word for w in words)
        return Transcription(
            "en", [Segment(start=START, end=words[-1].end, text=text, words=words)]
        )


def test_own_words_timed_into_the_lead_in_are_not_lost() -> None:
    decoder = PinnedDecoder(skipped=(START, START + LEAD_IN))
    result = decoder.transcribe_chunk(chunk(), audio())
    # the keep rule drops the three words timed into the lead-in; the hole they leave is found
    assert decoder.calls[1:] == [(START + LEAD_IN, START + LEAD_IN + 1.5, "")]
    assert words_of(result) == said(START + LEAD_IN, START + LEAD_IN + OWN)
    assert result.coverage.redecoded == pytest.approx(1.5)


def test_a_hole_inside_a_sentence_is_decoded_with_the_words_before_as_prompt() -> None:
    decoder = SkippingDecoder(skipped=(108.0, 111.0))
    result = decoder.transcribe_chunk(chunk(), audio())
    (offset, end, prompt), *more = decoder.calls[1:]
    assert not more
    # from the end of the word before to the start of the word after
    assert (offset, end) == pytest.approx((107.9, 111.0))
    assert prompt.split()[-1] == "w107.5"
    assert prompt.split()[0] == "w103"  # the chunk's own words: its lead-in's times may lie
    assert words_of(result) == said(START + LEAD_IN, START + LEAD_IN + OWN)
    # the sentence the decoder ran across the hole is split around the words found in it
    spans = [(s.start, s.end) for s in result.segments]
    assert np.allclose(spans, [(103.0, 107.9), (108.0, 110.9), (111.0, 122.9)])


def test_what_decoding_again_does_not_find_is_counted_as_uncovered() -> None:
    decoder = SkippingDecoder(skipped=(108.0, 111.0), again=False)
    before = counted("uncovered")
    result = decoder.transcribe_chunk(chunk(), audio())
    assert result.coverage.redecoded == pytest.approx(3.1)
    assert result.coverage.uncovered == pytest.approx(3.1)
    assert counted("uncovered") - before == pytest.approx(3.1)


def test_a_pause_without_words_is_not_a_hole() -> None:
    decoder = SkippingDecoder(skipped=(114.5, 117.0))  # VAD hears no speech from 115 to 117
    result = decoder.transcribe_chunk(chunk(), audio())
    assert len(decoder.calls) == 1
    assert result.coverage == coverage.Coverage()


def test_only_speech_in_the_chunks_own_span_counts() -> None:
    words = [Word(start=105.0, end=106.0, word="a")]
    speech = [(100.0, 110.0)]
    assert holes(words, speech, (104.5, 110.0)) == [Hole(106.0, 110.0, 4.0)]
    assert holes(words, speech, (103.0, 106.5)) == [Hole(103.0, 105.0, 2.0)]


def test_vad_frames_become_spans_with_hysteresis() -> None:
    frame = 512 / SAMPLE_RATE
    probabilities = np.array([0.1, 0.6, 0.4, 0.4, 0.2, 0.45, 0.7, 0.9])
    assert spans_of(probabilities, 10.0) == [
        (10.0 + frame, 10.0 + 4 * frame),
        (10.0 + 6 * frame, 10.0 + 8 * frame),
    ]

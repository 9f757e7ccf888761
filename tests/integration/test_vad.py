"""Silence skipped: Silero VAD keeps silence and music away from the decoder, and word times
stay those of the chunk's audio when long silences are cut out of the window."""

from __future__ import annotations

import numpy as np
import pytest

from streamscribe.common.audio import decode_chunk as decode
from streamscribe.transcribe.transcriber import Transcriber
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration

RATE = 16_000


def test_silence_and_music_never_reach_the_decoder(
    transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decoder ran on a chunk without speech")

    monkeypatch.setattr(transcriber.model, "generate_with_fallback", no_decoding)
    monkeypatch.setattr(transcriber.model, "transcribe", no_decoding)
    t = np.arange(28 * RATE) / RATE
    chords = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 6
    silence = np.zeros(28 * RATE)
    for audio in (silence, chords, silence + np.random.default_rng(1).normal(0, 1e-3, t.size)):
        result = transcriber.transcribe(audio.astype(np.float32), 60.0, "en")
        assert result.segments == []


def test_word_times_survive_a_long_silence_cut_out(
    transcriber: Transcriber, speech: Speech
) -> None:
    whole = decode(speech.path.read_bytes())
    second_start, third_start = speech.starts[1], speech.starts[2]
    # sentence 0, 8 s of silence, sentence 1: at 100 s into a media
    first = whole[: round(second_start * RATE)]
    second = whole[round(second_start * RATE) : round(third_start * RATE)]
    audio = np.concatenate([first, np.zeros(8 * RATE, np.float32), second])
    result = transcriber.transcribe(audio, 100.0, "en")
    words = [w for s in result.segments for w in s.words or []]
    said_second = 100.0 + first.size / RATE + 8.0
    assert words, result
    later = [w for w in words if w.start >= said_second - 0.5]
    assert later, "the second sentence is heard after the silence"
    assert later[0].start == pytest.approx(said_second, abs=0.8)
    assert all(not (said_second - 7.5 < w.start < said_second - 0.5) for w in words)

"""Where the chunker cuts, and the lead-in each chunk carries, on synthetic samples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamscribe.common.audio import SAMPLE_RATE, decode_chunk
from streamscribe.ingest.chunker import Chunk, ChunkLimits, _cut_point, _Cutter, _find_pause

Span = tuple[float, float]


def tone_with_gaps(seconds: float, gaps: list[Span]) -> np.ndarray:
    """A 440 Hz tone of `seconds`, silent in each (start, end) of `gaps`."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start, end in gaps:
        samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)] = 0.0
    return samples


def test_the_cut_falls_in_a_clear_pause_not_the_gap_after_a_word() -> None:
    # the case: a 1 s silence at 12-13 s, then a word, then a short gap at 13.6 s
    samples = tone_with_gaps(20, [(12.0, 13.0), (13.55, 13.7), (16.0, 16.2)])
    cut = _find_pause(samples, 10 * SAMPLE_RATE) / SAMPLE_RATE
    assert 12.3 < cut < 12.7


def test_a_pause_with_faint_noise_counts_as_a_pause() -> None:
    samples = tone_with_gaps(20, [(14.0, 15.5), (17.0, 17.1)])
    noise = np.random.default_rng(3).normal(0, 1e-3, samples.size).astype(np.float32)
    samples[14 * SAMPLE_RATE : round(15.5 * SAMPLE_RATE)] = noise[: round(1.5 * SAMPLE_RATE)]
    samples[17 * SAMPLE_RATE : round(17.1 * SAMPLE_RATE)] = 0.0  # quieter, but short
    cut = _find_pause(samples, 10 * SAMPLE_RATE) / SAMPLE_RATE
    assert 14.0 < cut < 15.5


def test_the_cut_falls_in_the_last_clear_pause_so_the_chunk_fills_its_window() -> None:
    # sentence ends at 13 and 17.4 s, then gaps after words at 18.6 and 19.4 s
    samples = tone_with_gaps(20, [(12.5, 13.5), (17.2, 17.6), (18.6, 18.8), (19.4, 19.5)])
    cut, pause = _cut_point(samples, 10 * SAMPLE_RATE)
    assert 17.2 < cut / SAMPLE_RATE < 17.6
    assert pause / SAMPLE_RATE == pytest.approx(0.4, abs=0.02)


def test_a_pause_is_clear_only_when_it_is_silence() -> None:
    samples = tone_with_gaps(20, [(14.0, 14.5)])
    _, pause = _cut_point(samples, 10 * SAMPLE_RATE)
    assert pause / SAMPLE_RATE == pytest.approx(0.5, abs=0.02)
    # speech without a gap: its quietest stretch is quiet only next to itself
    _, pause = _cut_point(tone_with_gaps(20, []), 10 * SAMPLE_RATE)
    assert pause == 0


def cut_all(samples: np.ndarray, limits: ChunkLimits) -> list[Chunk]:
    overlap = round(limits.overlap_seconds * SAMPLE_RATE)
    cutter = _Cutter(
        round(limits.min_seconds * SAMPLE_RATE) - overlap,
        round(limits.max_seconds * SAMPLE_RATE) - overlap,
        overlap,
    )
    out: list[Chunk] = []
    for start in range(0, samples.size, 4000):
        out.extend(cutter.add(samples[start : start + 4000]))
    out.extend(cutter.finish())
    return out


def test_after_a_short_pause_each_chunk_begins_with_the_end_of_the_one_before() -> None:
    gaps = [(float(s), s + 0.2) for s in range(5, 60, 4)]  # too short for a word to fit in
    samples = tone_with_gaps(62, gaps)
    chunks = cut_all(samples, ChunkLimits(min_seconds=8, max_seconds=12, overlap_seconds=2))
    assert len(chunks) >= 5
    assert chunks[0].lead_in == 0.0
    assert [c.lead_in for c in chunks[1:]] == [2.0] * (len(chunks) - 1)
    # own spans tile the media; audio (lead-in included) never exceeds the maximum
    assert chunks[0].start == 0.0
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    assert chunks[-1].end == pytest.approx(62)
    for chunk in chunks:
        audio = decode_chunk(chunk.audio)
        assert audio.size / SAMPLE_RATE == pytest.approx(
            chunk.end - chunk.start + chunk.lead_in, abs=0.1
        )
        assert audio.size / SAMPLE_RATE <= 12 + 0.1
        # the lead-in is the media's audio just before the chunk's start
        first = round((chunk.start - chunk.lead_in) * SAMPLE_RATE)
        expected = samples[first : first + SAMPLE_RATE // 2]
        assert np.corrcoef(audio[400 : SAMPLE_RATE // 2], expected[400:])[0, 1] > 0.9


def test_after_a_clear_pause_the_next_chunk_needs_no_lead_in() -> None:
    gaps = [(float(s), s + 0.5) for s in range(5, 60, 3)]  # a whole one in every 4 s
    samples = tone_with_gaps(62, gaps)
    chunks = cut_all(samples, ChunkLimits(min_seconds=8, max_seconds=12, overlap_seconds=2))
    assert len(chunks) >= 5
    assert [c.lead_in for c in chunks] == [0.0] * len(chunks)
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    for chunk in chunks:  # each cut in the middle of a pause, each chunk only its own audio
        assert any(s < chunk.start < e for s, e in gaps) or chunk.start == 0.0
        audio = decode_chunk(chunk.audio)
        assert audio.size / SAMPLE_RATE == pytest.approx(chunk.end - chunk.start, abs=0.1)
    # without a lead-in a chunk has the whole room: cuts between 8 and 12 s, not 6 and 10
    assert all(8 - 0.1 <= c.end - c.start <= 12 + 0.1 for c in chunks[:-1])


def test_overlap_must_leave_room_for_the_chunk() -> None:
    with pytest.raises(ValueError, match="overlap_seconds"):
        ChunkLimits(min_seconds=3, max_seconds=6, overlap_seconds=3)


def test_without_a_clear_pause_between_the_limits_the_last_one_before_is_taken() -> None:
    # a sentence ends at 7 s; after it only gaps between words, none clear, up to 12 s
    gaps = [(6.8, 7.3), *((s + 0.5, s + 0.65) for s in range(8, 20))]
    samples = tone_with_gaps(20, gaps)
    chunks = cut_all(samples, ChunkLimits(min_seconds=8, max_seconds=12, overlap_seconds=2))
    # the first cut in the clear pause (6 s is half the longest chunk: not too short), so the
    # next chunk starts at its sentence, without a lead-in
    assert 6.8 < chunks[0].end < 7.3
    assert chunks[1].lead_in == 0.0
    # with no clear pause at all, the cut falls in the longest pause between the limits
    assert all(c.lead_in == 2.0 for c in chunks[2:])

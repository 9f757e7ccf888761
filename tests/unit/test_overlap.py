"""Chunks that overlap: what ingest publishes, and which words the transcriber keeps."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np

from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.common.events import AudioChunk, Segment, Word
from streamscribe.ingest.chunker import ChunkLimits
from streamscribe.ingest.decoder import DecodeLimits
from streamscribe.ingest.publisher import MediaRef, publish_audio
from streamscribe.transcribe.transcriber import Keep, _kept, kept_span


def chunk_event(**fields: object) -> AudioChunk:
    base: dict[str, object] = {
        "media_id": "m-1",
        "seq": 1,
        "start": 20.0,
        "end": 45.0,
        "source_url": "http://e.com/a",
        "audio": b"OggS",
    }
    return AudioChunk.model_validate(base | fields)


def test_a_chunk_keeps_the_words_of_its_own_span_its_lead_in_is_context() -> None:
    middle = kept_span(chunk_event(lead_in=3.0, next_lead_in=3.0))
    assert (middle.start, middle.end) == (20.0, 45.0)
    final = kept_span(chunk_event(lead_in=3.0, next_lead_in=0.0, final=True, chunk_count=2))
    assert (final.start, final.end) == (20.0, None)
    older = kept_span(chunk_event())  # an older producer: no overlap, keep every word
    assert (older.start, older.end) == (None, None)


def word(start: float, end: float, text: str) -> Word:
    return Word(start=start, end=end, word=text)


def test_words_are_kept_by_their_middle_and_segments_rebuilt_from_them() -> None:
    words = [word(17.0, 17.5, "ended."), word(18.3, 18.8, "First,"), word(18.8, 19.2, "we")]
    segments = [
        Segment(start=17.0, end=19.2, text="ended. First, we", words=words),
        Segment(start=19.5, end=20.5, text="go on.", words=[word(19.5, 20.5, "go on.")]),
        Segment(start=10.0, end=11.0, text="no words, before"),
    ]
    kept = _kept(segments, Keep(18.5, None))
    assert [s.text for s in kept] == ["First, we", "go on."]
    assert (kept[0].start, kept[0].end) == (18.3, 19.2)
    assert kept[1] == segments[1]
    # the chunk before keeps exactly the rest: every word once
    before = _kept(segments, Keep(None, 18.5))
    assert [s.text for s in before] == ["ended.", "no words, before"]


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((samples * 32767).astype("<i2").tobytes())


async def test_published_chunks_say_how_much_of_their_audio_is_lead_in(tmp_path: Path) -> None:
    t = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
    # gaps of 0.2 s every 2.5 s: too short to be clear pauses, so chunks overlap
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.4 * t) > -0.97)
    media = tmp_path / "tone.wav"
    write_wav(media, tone)
    limits = DecodeLimits.for_chunks(
        ChunkLimits(min_seconds=4, max_seconds=6, overlap_seconds=1), 2**30
    )
    sent: list[AudioChunk] = []

    async def send(event: AudioChunk) -> None:
        sent.append(event)

    count = await publish_audio(media, MediaRef("m-1", "file:tone.wav"), limits, send)
    assert count == len(sent) >= 3
    assert [e.lead_in for e in sent] == [0.0] + [1.0] * (count - 1)
    assert [e.next_lead_in for e in sent] == [1.0] * (count - 1) + [0.0]
    assert all(a.end == b.start for a, b in itertools.pairwise(sent))

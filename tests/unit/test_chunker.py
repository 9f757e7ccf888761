"""The chunker on real speech made with espeak-ng, sox and ffmpeg (about 70 s in all)."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamscribe.common.audio import SAMPLE_RATE, decode_chunk
from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.chunker import (
    Chunk,
    ChunkLimits,
    chunk_file,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "Streaming audio must be cut into short pieces, so that every worker can transcribe a part "
    "of a long talk at the same time.",
    "Kafka carries each piece as one message, and consumers commit their offsets only after "
    "the output is safe.",
    "Silence between sentences is the best place to cut, because no word is split in half.",
    "A three hour lecture should never fill the memory of a small machine, whatever its format.",
    "The chunker decodes packets one by one, resamples them to sixteen kilohertz, and keeps "
    "only half a minute of samples.",
    "Every chunk is encoded as Opus inside an Ogg container, which keeps the messages small.",
    "Finally the transcripts are embedded and stored, so that anybody can search what was said.",
    "Thank you for listening, and please remember to keep the test audio short.",
]
PAUSES = [0.6, 1.5, 0.4, 0.8, 2.0, 0.5, 1.0, 0.7, 0.3]


def require(*tools: str) -> None:
    """Skip without the tools on a developer machine; in CI a missing tool is a failure."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI needs {', '.join(missing)} on PATH")
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def lavfi(source: str, out: Path, *options: str) -> None:
    """Make `out` from an ffmpeg test source."""
    run("ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, *options, out)


def duration_of(path: Path) -> float:
    return float(run("soxi", "-D", path))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 70 s of sentences separated by pauses of various lengths."""
    require("espeak-ng", "sox", "soxi")
    folder = tmp_path_factory.mktemp("speech")
    padded = []
    for i, (text, pause) in enumerate(zip(SENTENCES, PAUSES, strict=True)):
        raw, out = folder / f"s{i}.wav", folder / f"p{i}.wav"
        run("espeak-ng", "-s", "160", "-w", raw, text)
        run("sox", raw, out, "pad", "0", str(pause))
        padded.append(out)
    speech = folder / "speech.wav"
    run("sox", *padded, speech)
    assert 55 < duration_of(speech) < 90
    return speech


@pytest.fixture(scope="module")
def clip(speech: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 s of the speech, for the slower conversions."""
    clip = tmp_path_factory.mktemp("clip") / "clip.wav"
    run("sox", speech, clip, "trim", "0", "12")
    return clip


@pytest.fixture(scope="module")
def chunks(speech: Path) -> list[Chunk]:
    return list(chunk_file(speech, ChunkLimits(min_seconds=15, max_seconds=30)))


def test_chunks_tile_the_whole_media(chunks: list[Chunk], speech: Path) -> None:
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert len(chunks) >= 3
    assert chunks[0].start == 0
    for before, after in itertools.pairwise(chunks):
        assert after.start == pytest.approx(before.end, abs=1e-6)
    assert chunks[-1].end == pytest.approx(duration_of(speech), abs=0.01)


def test_chunks_respect_the_limits(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert chunk.end - chunk.start <= 30 + 1e-9
    for chunk in chunks[:-1]:
        assert chunk.end - chunk.start >= 15 - 1e-9


def test_chunks_decode_to_their_duration(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        samples = decode_chunk(chunk.audio)
        expected = (chunk.end - chunk.start) * SAMPLE_RATE
        assert samples.dtype == np.float32
        assert samples.ndim == 1
        assert abs(samples.size - expected) <= 0.01 * expected


def test_chunks_are_compact(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert len(chunk.audio) / (chunk.end - chunk.start) < 6_000
        assert len(chunk.audio) < 150_000
        assert chunk.audio.startswith(b"OggS")


def test_cuts_land_in_quiet_places(chunks: list[Chunk]) -> None:
    edge = SAMPLE_RATE // 20  # 50 ms either side of the cut
    decoded = [decode_chunk(c.audio) for c in chunks]
    for before, after in itertools.pairwise(decoded):
        assert rms(before[-edge:]) < rms(before) / 4
        assert rms(after[:edge]) < rms(after) / 4


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def test_memory_is_bounded_by_one_chunk(speech: Path) -> None:
    """Held samples stay near max_seconds, far below the decoded media."""
    whole_media_bytes = duration_of(speech) * SAMPLE_RATE * 4
    tracemalloc.start()
    try:
        count = sum(1 for _ in chunk_file(speech, ChunkLimits(min_seconds=1, max_seconds=2)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 25
    assert peak < whole_media_bytes / 4


def test_short_media_is_one_chunk(clip: Path) -> None:
    [chunk] = chunk_file(clip, ChunkLimits())
    assert (chunk.seq, chunk.start) == (0, 0)
    assert chunk.end == pytest.approx(12, abs=0.01)


@pytest.mark.parametrize(
    ("name", "ffmpeg_args"),
    [
        ("clip.mp3", "-c:a libmp3lame -b:a 64k"),
        ("clip.ogg", "-c:a libvorbis"),
        ("clip.opus", "-c:a libopus"),
        ("clip.mp4", "-f lavfi -i testsrc=size=64x64:rate=5 -shortest -c:v mpeg4 -c:a aac"),
    ],
)
def test_compressed_and_video_inputs(
    clip: Path, tmp_path: Path, name: str, ffmpeg_args: str
) -> None:
    require("ffmpeg")
    media = tmp_path / name
    run("ffmpeg", "-v", "error", "-i", clip, *ffmpeg_args.split(), media)
    chunks = list(chunk_file(media, ChunkLimits(min_seconds=3, max_seconds=6)))
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(c.end - c.start <= 6 + 1e-9 for c in chunks)
    # Encoder delay and padding shift the end by a few tens of milliseconds.
    assert chunks[-1].end == pytest.approx(12, abs=0.15)


def write_random(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(20_000))


def write_empty(path: Path) -> None:
    path.write_bytes(b"")


def write_truncated_mp4(path: Path) -> None:
    full = path.with_suffix(".full.mp4")
    lavfi("sine=duration=3", full, "-c:a", "aac")
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])


@pytest.mark.parametrize("write", [write_random, write_empty, write_truncated_mp4])
def test_unreadable_files_are_decode_errors(tmp_path: Path, write: Callable[[Path], None]) -> None:
    require("ffmpeg")
    media = tmp_path / "media.mp4"
    write(media)
    with pytest.raises(MediaError) as caught:
        list(chunk_file(media, ChunkLimits()))
    assert caught.value.reason is Reason.DECODE_ERROR
    assert "media.mp4" in caught.value.detail


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        list(chunk_file(tmp_path / "nowhere.mp3", ChunkLimits()))
    assert caught.value.reason is Reason.DECODE_ERROR


def test_video_without_audio_stream_is_no_audio(tmp_path: Path) -> None:
    require("ffmpeg")
    media = tmp_path / "silent-film.mp4"
    lavfi("testsrc=duration=1:size=64x64:rate=5", media, "-an", "-c:v", "mpeg4")
    with pytest.raises(MediaError) as caught:
        list(chunk_file(media, ChunkLimits()))
    assert caught.value.reason is Reason.NO_AUDIO
    assert "no audio stream" in caught.value.detail


def test_audio_stream_without_samples_is_no_audio(tmp_path: Path) -> None:
    require("ffmpeg")
    media = tmp_path / "nothing.wav"
    lavfi("anullsrc=r=16000:cl=mono", media, "-frames:a", "0")
    with pytest.raises(MediaError) as caught:
        list(chunk_file(media, ChunkLimits()))
    assert caught.value.reason is Reason.NO_AUDIO


def test_too_long_is_raised_while_decoding(speech: Path) -> None:
    produced: list[Chunk] = []
    with pytest.raises(MediaError) as caught:
        produced.extend(chunk_file(speech, ChunkLimits(2, 4, max_duration_seconds=10)))
    assert caught.value.reason is Reason.TOO_LONG
    # Decoding stopped near 10 s, long before the end of the media.
    assert 1 <= len(produced) <= 4
    assert produced[-1].end <= 10


def test_media_within_the_duration_limit_passes(clip: Path) -> None:
    assert list(chunk_file(clip, ChunkLimits(max_duration_seconds=13)))


@pytest.mark.parametrize("audio", [b"", b"OggS" + bytes(200), random.Random(3).randbytes(4096)])
def test_decode_chunk_rejects_bad_bytes(audio: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        decode_chunk(audio)
    assert caught.value.reason is Reason.DECODE_ERROR


def test_decode_chunk_rejects_a_truncated_chunk(chunks: list[Chunk]) -> None:
    audio = chunks[0].audio
    with pytest.raises(MediaError) as caught:
        decode_chunk(audio[:100])
    assert caught.value.reason is Reason.DECODE_ERROR


@pytest.mark.parametrize(
    "limits",
    [
        {"min_seconds": 0},
        {"min_seconds": 20, "max_seconds": 10},
        {"max_duration_seconds": 0},
    ],
)
def test_limits_reject_nonsense(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="seconds"):
        ChunkLimits(**limits)

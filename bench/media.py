"""Benchmark media: the test suite's known speech, repeated to any length with sox."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.speech import make_speech


def _base(out: Path) -> Path:
    base = out / "speech.wav"
    if not base.exists():
        make_speech(out)
    return base


def speech_of_minutes(minutes: float, out: Path) -> Path:
    """`minutes` of speech, 16 kHz mono FLAC (cached between runs)."""
    path = out / f"speech-{minutes:g}min.flac"
    if not path.exists():
        base = _base(out)
        repeats = int(minutes * 60 // 200) + 1  # the base lasts about 3.6 minutes
        subprocess.run(
            ["sox", *[str(base)] * repeats, str(path), "trim", "0", str(minutes * 60)], check=True
        )
    return path


def big_wav(out: Path, minutes: float = 95) -> Path:
    """Over 1 GB: `minutes` of speech as 48 kHz stereo 16-bit WAV."""
    path = out / "big.wav"
    if not path.exists():
        source = speech_of_minutes(minutes, out)
        subprocess.run(["sox", str(source), "-r", "48000", "-c", "2", "-b", "16", str(path)],
                       check=True)  # fmt: skip
    return path

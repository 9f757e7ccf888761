"""The isolated decoder: the same chunks as the chunker in-process, MediaErrors carried back with
their reason, a child that crashes, dies or runs out of memory or CPU time costs one media
(DECODE_ERROR) while the caller carries on, and a child that imports only what decoding needs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import sysconfig
import time
import wave
from pathlib import Path

import numpy as np
import psutil
import pytest

from streamscribe.common.audio import decode_chunk
from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest import chunker, decoder
from streamscribe.ingest.chunker import Chunk, ChunkLimits, chunk_file
from streamscribe.ingest.decoder import DecodeLimits, decoded_chunks
from tests.conftest import require_tool

LIMITS = DecodeLimits.for_chunks(ChunkLimits(min_seconds=3, max_seconds=6), 2**30)


async def decode(path: Path, limits: DecodeLimits = LIMITS) -> list[Chunk]:
    chunks: list[Chunk] = []
    await collect(path, limits, chunks)
    return chunks


async def collect(path: Path, limits: DecodeLimits, into: list[Chunk]) -> None:
    async for chunk in decoded_chunks(path, limits):
        into.append(chunk)


async def decode_failure(path: Path, limits: DecodeLimits = LIMITS) -> MediaError:
    with pytest.raises(MediaError) as caught:
        await decode(path, limits)
    return caught.value


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of a tone broken by silences, so that cuts have somewhere to go."""
    path = tmp_path_factory.mktemp("tone") / "tone.wav"
    t = np.arange(20 * 16000) / 16000
    samples = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.4 * t) > -0.5)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def piped_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of silence in about 100 kB of FLAC, written to a pipe so that no header declares
    its length: only decoding can tell how long it is."""
    sox = require_tool("sox")
    path = tmp_path_factory.mktemp("bomb") / "bomb.flac"
    made = subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-t", "flac", "-", "trim", "0", "3600"],
        capture_output=True,
        check=True,
    )
    path.write_bytes(made.stdout)
    assert path.stat().st_size < 200_000
    return path


def crash_with(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Make the child a Python snippet instead of the decoder."""
    monkeypatch.setattr(decoder, "_command", lambda path, limits: [sys.executable, "-c", code])


async def test_same_chunks_as_the_chunker_in_process(tone: Path) -> None:
    isolated = await decode(tone)
    local = list(chunk_file(tone, LIMITS.chunks))
    assert [(c.seq, c.start, c.end) for c in isolated] == [(c.seq, c.start, c.end) for c in local]
    assert len(isolated) >= 3
    # Ogg streams get random serial numbers, so compare what the chunks decode to.
    for mine, theirs in zip(isolated, local, strict=True):
        assert decode_chunk(mine.audio).size == decode_chunk(theirs.audio).size


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", Reason.DECODE_ERROR),
        (random.Random(1).randbytes(50_000), Reason.DECODE_ERROR),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(5000), Reason.DECODE_ERROR),
    ],
)
async def test_media_errors_come_back_with_their_reason(
    tmp_path: Path, content: bytes, reason: Reason
) -> None:
    path = tmp_path / "talk.mp3"
    path.write_bytes(content)
    error = await decode_failure(path)
    assert error.reason is reason
    assert "talk.mp3" in error.detail
    assert str(tmp_path) not in error.detail  # libav names the whole path; a user needs none


async def test_a_bomb_without_a_declared_length_stops_at_the_duration_limit(
    piped_bomb: Path,
) -> None:
    limits = DecodeLimits.for_chunks(ChunkLimits(max_duration_seconds=120), 2**30)
    started = time.monotonic()
    produced: list[Chunk] = []
    with pytest.raises(MediaError) as caught:
        await collect(piped_bomb, limits, produced)
    assert caught.value.reason is Reason.TOO_LONG
    assert produced[-1].end <= 120  # silence is cut at min_seconds: 15 s chunks
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import ctypes; ctypes.string_at(0)", "signal 11, SIGSEGV"),
        ("import os; os.abort()", "signal 6, SIGABRT"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal 9, SIGKILL"),
        ("raise SystemExit(3)", "exited with status 3"),
    ],
)
async def test_a_dying_child_is_a_decode_error_and_the_parent_carries_on(
    monkeypatch: pytest.MonkeyPatch, tone: Path, code: str, expected: str
) -> None:
    with monkeypatch.context() as patch:
        crash_with(patch, code)
        error = await decode_failure(tone)
    assert error.reason is Reason.DECODE_ERROR
    assert expected in error.detail
    assert await decode(tone)


async def test_garbage_from_the_child_is_a_decode_error(
    monkeypatch: pytest.MonkeyPatch, tone: Path
) -> None:
    crash_with(monkeypatch, "import sys; sys.stdout.write('x' * 100)")
    error = await decode_failure(tone)
    assert error.reason is Reason.DECODE_ERROR
    assert "malformed frame" in error.detail


async def test_the_memory_limit_applies_to_the_child(tone: Path) -> None:
    error = await decode_failure(tone, DecodeLimits(LIMITS.chunks, 64 * 2**20, 60))
    assert error.reason is Reason.DECODE_ERROR


async def test_the_cpu_limit_applies_to_the_child(
    piped_bomb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the wall-clock bound (twice the CPU seconds) comes first on a loaded 2-core machine,
    # where the child gets less than half a core: put it out of reach, this is about the CPU
    monkeypatch.setattr(decoder, "_WALL_PER_CPU", 60)
    endless = DecodeLimits(ChunkLimits(max_duration_seconds=None), 2**30, cpu_seconds=2)
    error = await decode_failure(piped_bomb, endless)
    assert error.reason is Reason.DECODE_ERROR
    assert "SIGXCPU" in error.detail


async def test_stopping_early_ends_the_child(tone: Path) -> None:
    others = set(psutil.Process().children())  # e.g. the session's broker
    chunks = decoded_chunks(tone, LIMITS)
    assert await anext(chunks)
    assert set(psutil.Process().children()) - others  # the decoder child runs...
    await chunks.aclose()
    assert set(psutil.Process().children()) == others  # ...and is gone once we stop


def test_cpu_time_grows_with_the_duration_limit() -> None:
    short = DecodeLimits.for_chunks(ChunkLimits(max_duration_seconds=600), 2**30)
    long = DecodeLimits.for_chunks(ChunkLimits(max_duration_seconds=4 * 3600), 2**30)
    assert 60 < short.cpu_seconds < long.cpu_seconds < 3600


# Runs the child's command as `python -m` would, then lists the modules it loaded on the way
# (name and file), decoding included: a lazy import mid-decode counts too.
RUN_AND_LIST_MODULES = """
import json, runpy, sys
report, module, *sys.argv[1:] = sys.argv[1:]
before = set(sys.modules)
runpy.run_module(module, run_name="__main__", alter_sys=True)
loaded = {name: getattr(sys.modules[name], "__file__", None) for name in set(sys.modules) - before}
with open(report, "w") as out:
    json.dump(loaded, out)
"""
HEAVY = {"pydantic", "pydantic_core", "pydantic_settings", "faststream", "aiokafka", "yt_dlp"}
# What the child needs besides the stdlib; its own module runs as __main__.
THIRD_PARTY = {"av", "numpy"}
# the shared audio module (sample rate, chunk codec) and the stdlib-only errors it raises
STREAMSCRIBE = {
    "streamscribe",
    "streamscribe.ingest",
    "streamscribe.ingest.chunker",
    "streamscribe.common",
    "streamscribe.common.audio",
    "streamscribe.common.errors",
}


def modules_of_child(path: Path, report: Path) -> dict[str, str | None]:
    python, flag, module, *arguments = decoder._command(path, LIMITS)
    assert flag == "-m"
    command = [python, "-c", RUN_AND_LIST_MODULES, str(report), module, *arguments]
    ran = subprocess.run(command, capture_output=True, check=True, timeout=60)
    assert b'"kind": "done"' in ran.stdout, ran.stderr.decode()[-1000:]
    loaded: dict[str, str | None] = json.loads(report.read_text())
    return loaded


def test_the_child_imports_only_what_decoding_needs(tone: Path, tmp_path: Path) -> None:
    """Its peak RSS counts against a small box's budget: pydantic alone would add about 16 MB."""
    loaded = modules_of_child(tone, tmp_path / "modules.json")
    packages = {name.partition(".")[0] for name in loaded}
    assert not packages & HEAVY
    assert {name for name in loaded if name.startswith("streamscribe")} <= STREAMSCRIBE
    site = tuple({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = {name for name, file in loaded.items() if file and file.startswith(site)}
    assert {name.partition(".")[0] for name in installed} <= THIRD_PARTY
    assert "av" in packages  # it did decode


def test_the_child_failure_codes_are_reasons() -> None:
    codes = {chunker.DECODE_ERROR, chunker.NO_AUDIO, chunker.TOO_LONG}
    assert codes <= {reason.value for reason in Reason}

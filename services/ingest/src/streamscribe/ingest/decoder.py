"""Decoding in a child process: libav parses hostile bytes, so a crash there (even a segfault), a
runaway allocation or a hang costs one media, never the worker.

This is the parent's side. It runs `python -m streamscribe.ingest.decode_child PATH LIMITS_JSON`
(a module that imports no more than decoding needs: its memory counts too) and reads the frames
the child streams back on its stdout: chunks, then `done`, or `error` with a failure code that
becomes a MediaError with that reason here. A child that ends without either crashed:
DECODE_ERROR, with its signal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import signal
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.chunker import Chunk, ChunkLimits
from streamscribe.ingest.decode_child import FRAME_LENGTH

_MAX_HEADER = 64 * 1024
_MAX_AUDIO = 16 * 2**20  # a chunk is a few hundred KiB at most
_KINDS = ("chunk", "error", "done")
_STDERR_TAIL = 1000
# Measured: about 10 s of CPU per hour of audio (decode, resample, encode). Twenty times that
# leaves room for slow machines and heavy codecs while still ending a decoder that spins.
_CPU_BASE_SECONDS = 60
_CPU_PER_AUDIO_SECOND = 0.05
_UNBOUNDED_AUDIO_SECONDS = 24 * 3600  # the CPU allowance when no duration limit is set
# Wall-clock allowance per CPU second: the child shares the machine's cores.
_WALL_PER_CPU = 2
# numpy's BLAS and glibc would otherwise reserve address space per core, for nothing here.
_CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class DecodeLimits:
    """What the child may decode and spend doing it."""

    chunks: ChunkLimits
    memory_bytes: int  # RLIMIT_AS of the child
    cpu_seconds: int  # RLIMIT_CPU of the child; it may wait twice as long in wall-clock time

    @classmethod
    def for_chunks(cls, chunks: ChunkLimits, memory_bytes: int) -> DecodeLimits:
        """CPU time in proportion to the longest media accepted."""
        audio = chunks.max_duration_seconds or _UNBOUNDED_AUDIO_SECONDS
        cpu = math.ceil(_CPU_BASE_SECONDS + _CPU_PER_AUDIO_SECOND * audio)
        return cls(chunks, memory_bytes, cpu)


async def decoded_chunks(path: Path, limits: DecodeLimits) -> AsyncGenerator[Chunk, None]:
    """The chunks of `path`, decoded by a child process. Close the iterator (`aclosing`) if
    you stop early: that kills the child."""
    child = await asyncio.create_subprocess_exec(
        *_command(path, limits),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | _CHILD_ENV,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    stderr = asyncio.create_task(_tail(child.stderr))
    clock = asyncio.get_running_loop().time
    # Only time spent waiting for the child counts, not time spent sending its chunks.
    remaining = float(_WALL_PER_CPU * limits.cpu_seconds)
    try:
        while True:
            started = clock()
            frame = await _read_frame(child.stdout, remaining)
            remaining -= clock() - started
            if frame is None:
                await child.wait()
                raise MediaError(Reason.DECODE_ERROR, _crash(child.returncode, await stderr))
            header, audio = frame
            if header["kind"] == "done":
                return
            if header["kind"] == "error":
                raise _carried_error(header)
            yield _chunk(header, audio)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        stderr.cancel()


def _command(path: Path, limits: DecodeLimits) -> list[str]:
    arguments = json.dumps(dataclasses.asdict(limits))
    return [sys.executable, "-m", "streamscribe.ingest.decode_child", str(path), arguments]


async def _read_frame(
    reader: asyncio.StreamReader, timeout: float
) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None if the child's stdout ended first."""
    try:
        async with asyncio.timeout(max(timeout, 0)):
            (length,) = FRAME_LENGTH.unpack(await reader.readexactly(FRAME_LENGTH.size))
            if length > _MAX_HEADER:
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(await reader.readexactly(length))
            if not isinstance(header, dict) or header.get("kind") not in _KINDS:
                raise ValueError("not a frame header")
            size = int(header.get("size", 0))
            if not 0 <= size <= _MAX_AUDIO:
                raise ValueError(f"{size} bytes of audio")
            return header, await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
    except TimeoutError:
        raise MediaError(Reason.DECODE_ERROR, "decoder ran out of wall-clock time") from None
    except (ValueError, TypeError) as exc:
        raise MediaError(Reason.DECODE_ERROR, f"decoder sent a malformed frame: {exc}") from exc


def _carried_error(header: dict[str, Any]) -> MediaError:
    """The MediaError the child raised, with its reason."""
    try:
        return MediaError(Reason(header["reason"]), str(header["detail"]))
    except (KeyError, ValueError) as exc:
        return MediaError(Reason.DECODE_ERROR, f"decoder sent a malformed error: {exc}")


def _chunk(header: dict[str, Any], audio: bytes) -> Chunk:
    try:
        start, end, lead_in = (float(header[key]) for key in ("start", "end", "lead_in"))
        return Chunk(int(header["seq"]), start, end, audio, lead_in)
    except (KeyError, TypeError, ValueError) as exc:
        raise MediaError(Reason.DECODE_ERROR, f"decoder sent a malformed chunk: {exc}") from exc


async def _tail(stream: asyncio.StreamReader) -> str:
    """The end of what the child wrote on stderr; reading it all keeps the child from blocking."""
    tail = b""
    while block := await stream.read(64 * 1024):
        tail = (tail + block)[-_STDERR_TAIL:]
    return tail.decode(errors="replace").strip()


def _crash(returncode: int | None, stderr: str) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        what = f"decoder crashed (signal {-returncode}, {name})"
        if -returncode == signal.SIGXCPU:
            what += ": it used up its CPU time"
    else:
        what = f"decoder exited with status {returncode} before finishing"
    last = stderr.splitlines()[-1] if stderr else ""
    return f"{what}; the media may be damaged or hostile" + (f" ({last})" if last else "")

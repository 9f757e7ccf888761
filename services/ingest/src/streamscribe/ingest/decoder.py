"""Decoding in a child process: libav parses hostile bytes, so a crash there (even a segfault), a
runaway allocation or a hang costs one media, never the worker.

The parent runs `python -m streamscribe.ingest.decoder PATH LIMITS_JSON`. The child caps its own
address space (RLIMIT_AS) and CPU time (RLIMIT_CPU), runs `chunk_file`, and streams each chunk
back on its stdout in frames: a 4-byte big-endian length, that many bytes of JSON header, then
the header's `size` bytes of audio. The last frame is `done`, or `error` with a MediaError's
reason and detail. A child that ends without either crashed: DECODE_ERROR, with its signal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import json
import math
import os
import resource
import signal
import struct
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.chunker import Chunk, ChunkLimits, chunk_file

_LENGTH = struct.Struct(">I")
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
    return [sys.executable, "-m", "streamscribe.ingest.decoder", str(path), arguments]


async def _read_frame(
    reader: asyncio.StreamReader, timeout: float
) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None if the child's stdout ended first."""
    try:
        async with asyncio.timeout(max(timeout, 0)):
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
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
        return Chunk(int(header["seq"]), float(header["start"]), float(header["end"]), audio)
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


def main(path: str, arguments: str) -> None:
    """The child: decode `path` and write frames to the stdout it was given."""
    out = _take_stdout()
    limits = json.loads(arguments)
    _limit_resources(int(limits["memory_bytes"]), int(limits["cpu_seconds"]))
    faulthandler.enable()  # a crash leaves its Python stack on stderr, for the parent's message
    try:
        for chunk in chunk_file(Path(path), ChunkLimits(**limits["chunks"])):
            header = {"kind": "chunk", "seq": chunk.seq, "start": chunk.start, "end": chunk.end}
            _write_frame(out, header, chunk.audio)
    except MediaError as exc:
        _write_frame(out, {"kind": "error", "reason": exc.reason.value, "detail": exc.detail})
    else:
        _write_frame(out, {"kind": "done"})


def _take_stdout() -> BinaryIO:
    """Keep fd 1 for frames alone: anything else printing to stdout goes to stderr instead."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return out


def _limit_resources(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # Past the soft limit SIGXCPU ends the child; the hard limit (SIGKILL) is the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # hostile input must not fill the disk


def _write_frame(out: BinaryIO, header: dict[str, Any], audio: bytes = b"") -> None:
    encoded = json.dumps(header | {"size": len(audio)}).encode()
    out.write(_LENGTH.pack(len(encoded)) + encoded + audio)
    out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The decoder child's process protocol: what `python -m streamscribe.ingest.decode_child PATH
LIMITS_JSON` runs. The cutting itself is `chunker.py`'s.

The child caps its own address space (RLIMIT_AS) and CPU time (RLIMIT_CPU), runs
`chunker.chunks`, and streams each chunk on its stdout in frames: a 4-byte big-endian length
(`FRAME_LENGTH`), that many bytes of JSON header, then the header's `size` bytes of audio. The
last frame is `done`, or `error` with the failure's code (as `reason`) and detail. Its peak RSS
counts against a small box's memory budget: like the chunker, it imports only the stdlib, PyAV
and numpy.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

from streamscribe.ingest.chunker import ChunkError, ChunkLimits, chunks

FRAME_LENGTH = struct.Struct(">I")


def main(path: str, arguments: str) -> None:
    """Decode `path` and write frames to the stdout this process was given."""
    out = _take_stdout()
    limits = json.loads(arguments)
    _limit_resources(int(limits["memory_bytes"]), int(limits["cpu_seconds"]))
    faulthandler.enable()  # a crash leaves its Python stack on stderr, for the parent's message
    try:
        for chunk in chunks(Path(path), ChunkLimits(**limits["chunks"])):
            header = {
                "kind": "chunk",
                "seq": chunk.seq,
                "start": chunk.start,
                "end": chunk.end,
                "lead_in": chunk.lead_in,
            }
            _write_frame(out, header, chunk.audio)
    except ChunkError as exc:
        _write_frame(out, {"kind": "error", "reason": exc.code, "detail": exc.detail})
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
    out.write(FRAME_LENGTH.pack(len(encoded)) + encoded + audio)
    out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The child that reads a media file's tags: `python -m streamscribe.ingest.file_tags PATH`
prints them as one JSON object (keys lower-cased, plus `duration` in seconds) and exits 0;
anything else means none. Capped in memory and CPU time like the decoder child; imports only
PyAV (see metadata.py for why a child)."""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

MEMORY_BYTES = 512 * 2**20
CPU_SECONDS = 5
_KEYS = ("title", "artist", "album_artist", "author", "date", "creation_time")


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def tags(path: str) -> dict[str, Any]:
    """Container tags first, then the first audio stream's (Ogg keeps its tags there)."""
    import av  # after the limits: libav's allocations count

    found: dict[str, Any] = {}
    with av.open(path, metadata_errors="ignore") as container:
        streams = container.streams.audio[:1]
        for metadata in [*(s.metadata for s in streams), container.metadata]:
            found |= {k.lower(): str(v) for k, v in metadata.items() if k.lower() in _KEYS}
        if container.duration is not None and container.duration > 0:
            found["duration"] = container.duration / av.time_base
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        return 2
    _limit()
    try:
        print(json.dumps(tags(argv[0])))
    except Exception:  # any failure means no tags: the decoder reports the file's faults
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

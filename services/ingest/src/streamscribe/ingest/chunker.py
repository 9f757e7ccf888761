"""Cut the audio of a media file into short Ogg/Opus chunks at its quietest moments, in this
process, raising MediaErrors.

The chunking itself lives in `decode_child.py`, which the decoder child runs too: it must not
import pydantic (`Reason`), so it fails with plain codes that are mapped to MediaErrors here.
See that module for how chunks are cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.decode_child import (
    Chunk,
    ChunkError,
    ChunkLimits,
    Samples,
    chunks,
)

__all__ = ["Chunk", "ChunkLimits", "Samples", "chunk_file"]


def chunk_file(path: Path, limits: ChunkLimits) -> Iterator[Chunk]:
    """Yield the chunks of the first audio stream of `path`, decoding only as far as needed.

    Raises MediaError: DECODE_ERROR if the file cannot be read, NO_AUDIO if it holds no audio,
    TOO_LONG as soon as more than `limits.max_duration_seconds` have been decoded.
    """
    try:
        yield from chunks(path, limits)
    except ChunkError as exc:
        # Chained to what caused the failure (libav's error, if any), as if raised directly.
        raise MediaError(Reason(exc.code), exc.detail) from exc.__cause__

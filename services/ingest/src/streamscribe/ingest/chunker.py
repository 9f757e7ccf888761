"""Cut the audio of a media file into short Ogg/Opus chunks at its quietest moments, in this
process, raising MediaErrors.

The chunking itself lives in `decode_child.py`, which the decoder child runs too: it must not
import pydantic (`Reason`), so it fails with plain codes that are mapped to MediaErrors here.
See that module for how chunks are cut.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.decode_child import (
    SAMPLE_RATE,
    Chunk,
    ChunkError,
    ChunkLimits,
    Samples,
    chunks,
    decode_blocks,
)

__all__ = ["SAMPLE_RATE", "Chunk", "ChunkLimits", "Samples", "chunk_file", "decode_chunk"]


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


def decode_chunk(audio: bytes) -> Samples:
    """The float32 mono 16 kHz samples of one encoded chunk; DECODE_ERROR if unreadable."""
    try:
        blocks = list(decode_blocks(io.BytesIO(audio), "audio chunk", None))
    except ChunkError as exc:
        # Whatever is wrong with a chunk, the bytes are at fault, not the media.
        raise MediaError(Reason.DECODE_ERROR, exc.detail) from exc
    if not blocks:
        raise MediaError(Reason.DECODE_ERROR, "audio chunk contains no audio samples")
    return np.concatenate(blocks)

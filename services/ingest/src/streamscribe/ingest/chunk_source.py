"""Ingest's public chunk source: a local media file as the `media.audio` events ingest itself
publishes for a download (the same decoder child, the same chunking settings). The CLI's
`submit FILE` chunks through this module, never through ingest's handlers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamscribe.ingest.chunker import ChunkLimits
from streamscribe.ingest.decoder import DecodeLimits
from streamscribe.ingest.metadata import from_file
from streamscribe.ingest.publisher import MediaRef, Send, audio_key, publish_audio
from streamscribe.ingest.settings import IngestSection

__all__ = ["MediaRef", "Send", "audio_key", "chunk_limits", "decode_limits", "publish_file"]


def chunk_limits(section: IngestSection, max_seconds: float | None = None) -> ChunkLimits:
    """The configured chunking, with chunks no longer than `max_seconds` when given."""
    longest = section.chunk_max_seconds
    return ChunkLimits(
        min_seconds=section.chunk_min_seconds,
        max_seconds=longest if max_seconds is None else min(longest, max_seconds),
        max_duration_seconds=section.max_duration_seconds,
        overlap_seconds=section.overlap_seconds,
    )


def decode_limits(section: IngestSection, chunks: ChunkLimits) -> DecodeLimits:
    return DecodeLimits.for_chunks(chunks, section.decoder_memory_bytes)


async def publish_file(
    path: Path, media: MediaRef, section: IngestSection, send: Send, name: str | None = None
) -> int:
    """`send` every chunk of `path` as configured; return the chunk count. The chunks carry
    `media.metadata`, completed from the file's tags, then its name (`name`: an upload's)."""
    found = await from_file(path, name)
    media = replace(media, metadata=media.metadata.over(found) if media.metadata else found)
    return await publish_audio(path, media, decode_limits(section, chunk_limits(section)), send)

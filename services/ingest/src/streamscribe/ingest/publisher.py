"""Turns a local media file into `media.audio` events, one chunk at a time. Ingest uses it for
downloads and the CLI for local files, so both produce identical chunks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

from streamscribe.common.events import AudioChunk, MediaMetadata
from streamscribe.ingest.chunker import Chunk
from streamscribe.ingest.decoder import DecodeLimits, decoded_chunks

Send = Callable[[AudioChunk], Awaitable[None]]


@dataclass(frozen=True)
class MediaRef:
    media_id: str
    source_url: str
    language: str | None = None
    run: str | None = None
    metadata: MediaMetadata | None = None


async def publish_audio(path: Path, media: MediaRef, limits: DecodeLimits, send: Send) -> int:
    """Send every chunk of `path`; the last one carries `final` and the chunk count.
    Decoding runs in a child process (decoder.py); one chunk is held back to know which is last."""
    held: Chunk | None = None
    async with aclosing(decoded_chunks(path, limits)) as chunks:
        async for chunk in chunks:
            if held is not None:
                await send(_event(held, media, final=False, next_lead_in=chunk.lead_in))
            held = chunk
    if held is None:  # the decoder raises first; kept so `held` is typed non-None below
        raise RuntimeError(f"no chunks from {path}")
    await send(_event(held, media, final=True))
    return held.seq + 1


def _event(chunk: Chunk, media: MediaRef, final: bool, next_lead_in: float = 0.0) -> AudioChunk:
    return AudioChunk(
        media_id=media.media_id,
        seq=chunk.seq,
        start=chunk.start,
        end=chunk.end,
        final=final,
        chunk_count=chunk.seq + 1 if final else None,
        source_url=media.source_url,
        language=media.language,
        run=media.run,
        audio=chunk.audio,
        lead_in=chunk.lead_in,
        next_lead_in=next_lead_in,
        metadata=media.metadata,
    )


def audio_key(event: AudioChunk) -> bytes:
    """Chunks of one media spread over partitions, so every transcribe worker shares a long one."""
    return event.chunk_id.encode()

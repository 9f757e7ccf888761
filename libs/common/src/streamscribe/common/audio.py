"""The audio every stage agrees on: a `media.audio` chunk is Ogg/Opus, 16 kHz mono. The sample
rate and the chunk's decoder live here once: ingest's decoder child encodes at this rate,
transcribe decodes chunks with `decode_chunk`, the tests check chunks with it.

Imports only the stdlib, numpy, PyAV and the stdlib-only `errors`: ingest's lean decoder child
imports this module too."""

from __future__ import annotations

import io
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from streamscribe.common.errors import MediaError, Reason

SAMPLE_RATE = 16_000
CHUNK_CONTAINER = "ogg"
CHUNK_CODEC: Final = "libopus"


def decode_chunk(audio: bytes) -> npt.NDArray[np.float32]:
    """The float32 mono samples of one encoded chunk, at SAMPLE_RATE. Whatever is wrong with a
    chunk, the bytes are at fault, not the media: DECODE_ERROR."""
    try:
        with av.open(io.BytesIO(audio), mode="r") as container:
            if not container.streams.audio:
                raise MediaError(Reason.DECODE_ERROR, "audio chunk holds no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            blocks = [
                _samples(out)
                for packet in container.demux(container.streams.audio[0])
                for frame in packet.decode()
                for out in resampler.resample(frame)
            ]
            blocks += [_samples(out) for out in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise MediaError(Reason.DECODE_ERROR, f"audio chunk cannot be decoded: {exc}") from exc
    if not blocks:
        raise MediaError(Reason.DECODE_ERROR, "audio chunk contains no audio samples")
    return np.concatenate(blocks)


def _samples(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    return np.frombuffer(bytes(frame.planes[0]), dtype=np.float32, count=frame.samples)

"""The chunker: how a media file's audio is cut into short Ogg/Opus chunks at its pauses.

The file is decoded packet by packet into one buffer that never holds more than `max_seconds` of
16 kHz mono audio, so memory does not depend on how long the media is. When the buffer is full
it is cut between `min_seconds` and `max_seconds`, in the middle of the last clear pause there
(0.3 s of silence: no word straddles it, and the chunk fills as much of its window as it can),
else of the last clear pause after half of `max_seconds` (the next chunk then starts at a
sentence), else of the longest pause between the limits (the longest run of 100 ms windows near
the quietest one: a pause between sentences rather than the gap after a word); the piece is
encoded, and the rest of the buffer starts the next chunk. Timestamps come from sample counts,
so chunks tile the media exactly.

Where a cut is not in a clear pause, the next chunk also begins with the last `overlap_seconds`
of the chunk before it (its `lead_in`): a cut then never makes a chunk's first words be decoded
cold. Both limits count the lead-in, so a chunk's audio still fits one 30 s Whisper window.

The decoder child (`decode_child.py`, its process protocol) runs `chunks` under its memory
limit, so this module imports only the stdlib, PyAV and numpy: no pydantic, settings or Kafka
client, which would cost more memory than decoding does. Failures are plain string codes
(`ChunkError.code`, values of `streamscribe.common.events.Reason`); `chunk_file` (in process)
and `decoder.py` (the parent) turn them into MediaErrors.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.container import InputContainer

from streamscribe.common.audio import CHUNK_CODEC, CHUNK_CONTAINER, SAMPLE_RATE

# The failure codes: the values of the Reason members they stand for.
DECODE_ERROR = "decode_error"
NO_AUDIO = "no_audio"
TOO_LONG = "too_long"

Samples = npt.NDArray[np.float32]

# A cut is centred in a pause measured in windows this long: about a gap between two words.
_QUIET_WINDOW = SAMPLE_RATE // 10
# A window counts as pause when it is at most 6 dB louder than the quietest one, or 40 dB below
# the loudest (a noise floor under speech), or digital silence below the absolute floor (a sum
# of squares over one window).
_QUIET_RATIO = 4.0
_QUIET_BELOW_LOUDEST = 1e-4
_QUIET_FLOOR = 1e-6
# A pause this long at a cut is clear: no word straddles the cut, so the next chunk needs no
# lead-in (measured: a lead-in there makes the first words worse, not better; docs/design.md).
_CLEAR_PAUSE = round(SAMPLE_RATE * 0.3)
# Where no clear pause lies between the limits, the last one after this share of the longest
# chunk is taken: a window that starts in a clear pause starts at a sentence, as faster-whisper's
# windows do, where one cut inside a sentence decodes the next opening as a fragment ("4." for
# "Fourth,") and may skip its first words. Shorter windows cost throughput, not words.
_CLEAR_FLOOR_SHARE = 0.5
# A shorter final remainder is decoder padding or a click, not worth a message of its own.
_MIN_TAIL = SAMPLE_RATE // 5
# Speech at 24 kbit/s Opus transcribes as well as the original: about 90 KB per 30 s chunk.
_BIT_RATE = 24_000
# Opus frames of 60 ms rather than its default 20: a 30 s chunk is 500 packets instead of 1500,
# and the transcriber, which decodes each packet and resamples each frame through PyAV, decodes
# it in 85 ms instead of 150 (at the same size and WER; bench.transcribers).
_FRAME_MS = "60"
# The encoder is fed this many samples at a time. A whole chunk in one frame would be copied
# into it, then split into Opus frames that all exist at once (several MB for 30 s); PyAV
# re-frames to the frame duration either way, so the packets are the same.
_ENCODE_BLOCK = SAMPLE_RATE // 2
_UNREADABLE = "it is empty, truncated, damaged or in a format ffmpeg cannot read"


class ChunkError(Exception):
    """This media cannot be chunked; `code` is DECODE_ERROR, NO_AUDIO or TOO_LONG."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ChunkLimits:
    """How long chunks are, and the longest media worth decoding."""

    min_seconds: float = 15.0  # a cut happens in a pause between min and max
    max_seconds: float = 30.0
    max_duration_seconds: float | None = None  # refuse media longer than this while decoding
    overlap_seconds: float = 0.0  # lead-in from the chunk before; counted in min and max

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_seconds < self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"chunk limits need 0 <= overlap_seconds < min_seconds <= max_seconds, got "
                f"{self.overlap_seconds}, {self.min_seconds} and {self.max_seconds}"
            )
        if self.max_duration_seconds is not None and self.max_duration_seconds <= 0:
            raise ValueError(f"max_duration_seconds must be positive: {self.max_duration_seconds}")


@dataclass(frozen=True)
class Chunk:
    """One piece of the media's audio; `start` and `end` are seconds from its beginning."""

    seq: int
    start: float
    end: float
    audio: bytes  # Ogg/Opus, 16 kHz mono
    lead_in: float = 0.0  # seconds of audio before `start` that `audio` begins with


def chunks(path: Path, limits: ChunkLimits) -> Iterator[Chunk]:
    """Yield the chunks of the first audio stream of `path`, decoding only as far as needed.

    Raises ChunkError: DECODE_ERROR if the file cannot be read, NO_AUDIO if it holds no
    audio, TOO_LONG as soon as more than `limits.max_duration_seconds` have been decoded.
    """
    max_duration = limits.max_duration_seconds
    max_samples = None if max_duration is None else _to_samples(max_duration)
    overlap = _to_samples(limits.overlap_seconds)
    shortest, longest = _to_samples(limits.min_seconds), _to_samples(limits.max_seconds)
    cutter = _Cutter(shortest - overlap, longest - overlap, overlap)
    for block in decode_blocks(str(path), path.name, max_samples):
        yield from cutter.add(block)
    if cutter.is_empty():
        raise ChunkError(NO_AUDIO, f"{path.name} contains no audio samples")
    yield from cutter.finish()


def _to_samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def decode_blocks(
    source: str | io.BytesIO, name: str, max_samples: int | None
) -> Iterator[Samples]:
    """Yield the first audio stream as 16 kHz mono float32 blocks, one decoded frame at a time."""
    container = _open(source, name)
    with container:
        stream = _first_audio_stream(container, name)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        decoded = 0
        try:
            # Demuxing only the audio stream skips video packets without decoding them.
            for packet in container.demux(stream):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        decoded += out.samples
                        _check_duration(decoded, max_samples, name)
                        yield _samples_of(out)
            for out in resampler.resample(None):
                yield _samples_of(out)
        except av.FFmpegError as exc:
            raise ChunkError(
                DECODE_ERROR,
                f"cannot decode {name} after {decoded / SAMPLE_RATE:.1f} s of audio: "
                f"{_ffmpeg_message(exc)}; "
                f"{_UNREADABLE} (re-encoding it with ffmpeg may repair it)",
            ) from exc


def _open(source: str | io.BytesIO, name: str) -> InputContainer:
    try:
        return av.open(source, mode="r")
    except av.FFmpegError as exc:
        message = _ffmpeg_message(exc)
        raise ChunkError(DECODE_ERROR, f"cannot open {name}: {message}; {_UNREADABLE}") from exc


def _ffmpeg_message(exc: av.FFmpegError) -> str:
    """libav's message without the file name it appends: that is a path of the job's temp dir,
    which means nothing to a user and says where the workers keep their files."""
    return str(exc.strerror or exc).strip()


def _first_audio_stream(container: InputContainer, name: str) -> AudioStream:
    if not container.streams.audio:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise ChunkError(
            NO_AUDIO, f"{name} has no audio stream (streams: {kinds}): nothing to transcribe"
        )
    return container.streams.audio[0]


def _check_duration(decoded: int, max_samples: int | None, name: str) -> None:
    if max_samples is not None and decoded > max_samples:
        raise ChunkError(
            TOO_LONG,
            f"{name} is longer than the limit of {max_samples / SAMPLE_RATE:g} s of audio; "
            "decoding stopped there",
        )


def _samples_of(frame: av.AudioFrame) -> Samples:
    # Packed float mono is one plane; a view of it spares the copy `to_ndarray` makes.
    return np.frombuffer(memoryview(frame.planes[0]), dtype=np.float32, count=frame.samples)


class _Cutter:
    """Accumulates samples in a fixed buffer and cuts it into chunks at pauses. The buffer holds
    the lead-in (the end of the chunk before) followed by the next chunk's own samples."""

    def __init__(self, min_samples: int, max_samples: int, overlap: int = 0) -> None:
        self._min = min_samples
        self._overlap = overlap
        self._buffer: Samples = np.zeros(overlap + max_samples, dtype=np.float32)
        self._lead = 0  # samples of lead-in at the front of the buffer
        self._filled = 0  # the chunk's own samples after them
        self._offset = 0  # samples of the media before the chunk's own first sample
        self._seq = 0

    def is_empty(self) -> bool:
        return self._seq == 0 and self._filled == 0

    def add(self, block: Samples) -> Iterator[Chunk]:
        """Copy `block` in, emitting a chunk each time the buffer fills up."""
        while block.size:
            # a chunk without a lead-in has its room: the limits count the lead-in
            capacity = self._buffer.size - self._lead
            taken = min(block.size, capacity - self._filled)
            at = self._lead + self._filled
            self._buffer[at : at + taken] = block[:taken]
            self._filled += taken
            block = block[taken:]
            if self._filled == capacity:
                own = self._buffer[self._lead : self._lead + self._filled]
                start = self._min + self._overlap - self._lead
                floor = round(self._buffer.size * _CLEAR_FLOOR_SHARE) - self._lead
                cut, pause = _cut_point(own, start, min(floor, start))
                yield self._emit(cut, clear=pause >= _CLEAR_PAUSE)

    def finish(self) -> Iterator[Chunk]:
        """Emit what remains as the last chunk, unless it is a negligible tail."""
        if self._filled >= _MIN_TAIL or (self._seq == 0 and self._filled > 0):
            yield self._emit(self._filled)

    def _emit(self, cut: int, clear: bool = False) -> Chunk:
        """The chunk up to `cut`. After a `clear` pause the next chunk has no lead-in: no word
        straddles the cut, and its first words are decoded as a window's first words are."""
        end = self._lead + cut
        chunk = Chunk(
            seq=self._seq,
            start=self._offset / SAMPLE_RATE,
            end=(self._offset + cut) / SAMPLE_RATE,
            audio=_encode(self._buffer[:end]),
            lead_in=self._lead / SAMPLE_RATE,
        )
        # The last `overlap` samples and the rest move to the front; numpy copies overlapping
        # slices correctly.
        lead = 0 if clear else min(self._overlap, end)
        rest = self._filled - cut
        self._buffer[: lead + rest] = self._buffer[end - lead : end + rest]
        self._lead = lead
        self._filled = rest
        self._offset += cut
        self._seq += 1
        return chunk


def _find_pause(samples: Samples, start: int) -> int:
    """Where `samples[start:]` is cut (see `_cut_point`)."""
    return _cut_point(samples, start)[0]


def _cut_point(samples: Samples, start: int, floor: int | None = None) -> tuple[int, int]:
    """Where `samples[start:]` is cut, and the length in samples of the clear pause there (0 if
    it is not one): the middle of the last clear pause (0.3 s of silence, no word straddles it),
    so that the chunk fills as much of its 30 s window as it can, else of the last clear pause
    in `samples[floor:start]`; without one, the middle of the longest pause after `start` (the
    longest run of quiet 100 ms windows; its end if too short). The quietest window alone is
    often the short gap right after a word, which the next chunk would then begin with cold."""
    if floor is not None and floor < start:
        cut, pause = _cut_point(samples, floor)
        if pause:  # the last clear pause after `floor`: after `start` when there is one there
            return cut, pause
    region = samples[start:]
    window = min(_QUIET_WINDOW, region.size)
    if window == 0:
        return samples.size, 0
    pauses = _pauses(region, window)
    clear = [(b, e) for b, e, silent in pauses if silent and e - b >= _CLEAR_PAUSE]
    if clear:
        begin, end = clear[-1]
        return start + (begin + end) // 2, end - begin
    begin, end, silent = max(pauses, key=lambda pause: pause[1] - pause[0])
    return start + (begin + end) // 2, end - begin if silent else 0


def _pauses(region: Samples, window: int) -> list[tuple[int, int, bool]]:
    """The runs of quiet `window`s in `region`, as sample spans, each with whether it is
    silence (40 dB below the loudest window, or digital silence) rather than quiet only next to
    the quietest window (speech with no gap at all)."""
    # energy[i] is the float64 energy of region[:i]: built in one array, in place, rather than
    # in a float64 copy, its square, their sum and a concatenation.
    energy = np.zeros(region.size + 1)
    np.square(region, out=energy[1:], dtype=np.float64)
    np.cumsum(energy, out=energy)
    window_energy = energy[window:] - energy[:-window]
    loudest = float(window_energy.max())
    silence = max(loudest * _QUIET_BELOW_LOUDEST, _QUIET_FLOOR)
    quiet = window_energy <= max(float(window_energy.min()) * _QUIET_RATIO, silence)
    # runs of quiet windows: where `quiet` switches on and off
    edges = np.diff(quiet.astype(np.int8), prepend=0, append=0)
    (begins,) = np.nonzero(edges == 1)
    (ends,) = np.nonzero(edges == -1)
    return [
        (int(begin), int(end) + window - 1, bool(window_energy[begin:end].max() <= silence))
        for begin, end in zip(begins, ends, strict=True)
    ]


def _encode(samples: Samples) -> bytes:
    """Ogg/Opus bytes of `samples`; libopus accepts 16 kHz input natively."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=CHUNK_CONTAINER) as container:
        stream = container.add_stream(
            CHUNK_CODEC, rate=SAMPLE_RATE, layout="mono", options={"frame_duration": _FRAME_MS}
        )
        stream.bit_rate = _BIT_RATE
        for start in range(0, samples.size, _ENCODE_BLOCK):
            block = samples[start : start + _ENCODE_BLOCK]
            frame = av.AudioFrame(format="flt", layout="mono", samples=block.size)
            frame.planes[0].update(block.tobytes())
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def chunk_file(path: Path, limits: ChunkLimits) -> Iterator[Chunk]:
    """`chunks` in this process, raising MediaErrors: DECODE_ERROR if the file cannot be read,
    NO_AUDIO if it holds no audio, TOO_LONG as soon as more than `limits.max_duration_seconds`
    have been decoded."""
    # imported here: the decoder child imports this module and must not load pydantic
    from streamscribe.common.errors import MediaError
    from streamscribe.common.events import Reason

    try:
        yield from chunks(path, limits)
    except ChunkError as exc:
        # Chained to what caused the failure (libav's error, if any), as if raised directly.
        raise MediaError(Reason(exc.code), exc.detail) from exc.__cause__

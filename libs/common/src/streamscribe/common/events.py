"""Every event on every topic: versioned pydantic models, published as plain JSON.

`kcat` users can read all of them and write `media.requested` by hand: `{"url": "..."}` is valid.
Audio travels as base64 inside the JSON so that the whole pipeline stays one format.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from streamscribe.common.errors import InvalidEventError
from streamscribe.common.errors import Reason as Reason  # where it always was, for callers

MEDIA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_EVENT_BYTES = 4 * 1024 * 1024
RUN_PATTERN = r"^[0-9A-Za-z._:-]{1,64}$"
RUN_DESCRIPTION = (
    "Which submission of the media this belongs to: ids sort by submission time, so the ledger "
    "keeps the newest run and ignores late events of an older one. Set by the producer of "
    "`media.requested` (the CLI does) or, when absent, from the request's Kafka record."
)


def new_run() -> str:
    """A run id that sorts by time: milliseconds since the epoch, then random bits."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def record_run(timestamp_ms: int, partition: int, offset: int) -> str:
    """The run of a `media.requested` record that names none: every consumer of the same record
    (ingest, the ledger) derives the same id, sorted by the record's timestamp."""
    return f"{max(timestamp_ms, 0):013d}-p{partition}-o{offset}"


def _now() -> datetime:
    return datetime.now(UTC)


def _audio_from(value: object) -> bytes:
    """Raw bytes from Python, base64 text from JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise ValueError("audio must be base64 text")


AudioBytes = Annotated[
    bytes,
    PlainValidator(_audio_from),
    PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class TranscriptSource(StrEnum):
    """Where a transcript's text came from."""

    ASR = "asr"  # speech recognition (the transcribe stage)
    CAPTIONS = "captions"  # the media's own captions, as its site publishes them


class Event(BaseModel):
    """Base of every event: a schema version and a timestamp."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal[1] = 1
    at: datetime = Field(default_factory=_now, description="When the event was made (UTC).")


class MediaRequested(Event):
    """`media.requested`: somebody wants a URL transcribed. Only `url` is required."""

    url: str = Field(min_length=1, max_length=4096)
    media_id: str | None = Field(None, pattern=MEDIA_ID_PATTERN)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)
    captions: Literal["prefer", "never", "only"] | None = Field(
        None, description="Overrides ingest's captions setting for this media."
    )

    @property
    def resolved_id(self) -> str:
        return self.media_id or media_id_for_url(self.url)


class AudioChunk(Event):
    """`media.audio`: one short piece of a media's audio, Ogg/Opus at 16 kHz mono."""

    media_id: str = Field(pattern=MEDIA_ID_PATTERN)
    seq: int = Field(ge=0)
    start: float = Field(ge=0, description="Seconds from the start of the media.")
    end: float = Field(ge=0)
    final: bool = Field(False, description="True on the last chunk of the media.")
    chunk_count: int | None = Field(None, ge=1, description="Set on the final chunk.")
    source_url: str
    language: str | None = None
    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)
    audio: AudioBytes
    lead_in: float = Field(
        0.0,
        ge=0,
        description="Seconds of audio before `start` that `audio` begins with: context for the "
        "chunk's first words (added within version 1).",
    )
    next_lead_in: float = Field(
        0.0,
        ge=0,
        description="The next chunk's `lead_in`: the end of this chunk's audio that it hears "
        "too (0 on the final chunk and from older producers).",
    )

    @property
    def chunk_id(self) -> str:
        return chunk_id(self.media_id, self.seq)


class Word(BaseModel):
    """One aligned word, seconds absolute in the media."""

    model_config = ConfigDict(frozen=True)

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    word: str
    probability: float = Field(1.0, ge=0, le=1, description="The model's confidence.")


class Segment(BaseModel):
    """A timed piece of transcript (about a sentence), seconds absolute in the media.

    `words` is optional (added within version 1: older events and captions have none); when
    present the words lie inside the segment, in time order."""

    model_config = ConfigDict(frozen=True)

    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: list[Word] | None = None


class Transcript(Event):
    """`media.transcript`: the transcript of one chunk."""

    media_id: str = Field(pattern=MEDIA_ID_PATTERN)
    seq: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    final: bool = False
    chunk_count: int | None = Field(None, ge=1)
    source_url: str
    language: str
    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)
    segments: list[Segment]
    source: TranscriptSource = Field(
        TranscriptSource.ASR, description="Speech recognition, or the media's own captions."
    )
    speech_redecoded_seconds: float = Field(
        0.0,
        ge=0,
        description="Seconds of speech (Silero VAD) in the chunk's own span that its decoding "
        "left without words and that were decoded again (added within version 1).",
    )
    speech_uncovered_seconds: float = Field(
        0.0,
        ge=0,
        description="Seconds of speech in the chunk's own span still without words after that "
        "(added within version 1): what the transcript may be missing.",
    )

    @property
    def chunk_id(self) -> str:
        return chunk_id(self.media_id, self.seq)


class MediaIndexed(Event):
    """`media.indexed`: every chunk of the media is in the store."""

    media_id: str = Field(pattern=MEDIA_ID_PATTERN)
    source_url: str
    chunk_count: int = Field(ge=1)
    passage_count: int = Field(ge=0)
    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)


class MediaFailed(Event):
    """`media.failed`: terminal failure of one media, with a reason code."""

    media_id: str
    stage: str
    reason: Reason
    detail: str = Field("", max_length=2000)
    source_url: str | None = None
    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)

    @field_validator("detail", mode="before")
    @classmethod
    def _clip(cls, value: object) -> object:
        return value[:2000] if isinstance(value, str) else value


def normalise_url(url: str) -> str:
    """The form two spellings of one URL share: lower-case scheme and host, no default port,
    no fragment."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and (scheme, port) not in {("http", 80), ("https", 443)}:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def media_id_for_url(url: str) -> str:
    return "m-" + hashlib.sha256(normalise_url(url).encode()).hexdigest()[:20]


def chunk_id(media_id: str, seq: int) -> str:
    return f"{media_id}:{seq:06d}"


E = TypeVar("E", bound=Event)


def parse_event(model: type[E], body: bytes) -> E:
    """Validate raw message bytes at the handler boundary; raise InvalidEventError if not valid."""
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event is {len(body)} bytes, over {MAX_EVENT_BYTES}")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidEventError(_summarise(exc)) from exc


def _summarise(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])


def encode_event(event: Event) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()

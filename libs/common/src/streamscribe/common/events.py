"""Every event on every topic: versioned pydantic models, published as plain JSON.

`kcat` users can read all of them and write `media.requested` by hand: `{"url": "..."}` is valid.
Audio travels as base64 inside the JSON so that the whole pipeline stays one format.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from datetime import UTC, date, datetime
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
    ValidatorFunctionWrapHandler,
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


_TEXT_CHARS = 500
_URL_CHARS = 4096


def _clipped(value: object) -> object:
    """Text as given, blanks as absent, long text cut: a site's title is not worth a refusal."""
    if not isinstance(value, str):
        return value
    text = " ".join(value.split())[:_TEXT_CHARS]
    return text or None


def _web_url(value: object) -> object:
    """Only http(s) URLs: the page puts them in `href` and `src`, where `javascript:` would run."""
    if not isinstance(value, str):
        return value
    url = value.strip()
    web = url.lower().startswith(("http://", "https://"))
    return url if web and len(url) <= _URL_CHARS else None


class MediaMetadata(BaseModel):
    """What is known of a media beyond its URL (added within version 1): from the site's page
    (ingest's probe), a file's name and tags, or the client. Every field is optional; a bad
    value is dropped, never a reason to refuse the event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str | None = None
    author: str | None = Field(None, description="Uploader, channel or artist.")
    published: date | None = Field(None, description="Publication date, ISO `YYYY-MM-DD`.")
    duration: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Seconds, as the source declares."
    )
    webpage_url: str | None = Field(None, description="The media's page (http or https).")
    thumbnail_url: str | None = Field(None, description="An image of it (http or https).")

    @field_validator("title", "author", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _clipped(value)

    @field_validator("webpage_url", "thumbnail_url", mode="before")
    @classmethod
    def _url(cls, value: object) -> object:
        return _web_url(value)

    @field_validator("published", "duration", mode="wrap")
    @classmethod
    def _or_none(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            return None

    def over(self, other: MediaMetadata | None) -> MediaMetadata:
        """These fields, and `other`'s where these are unknown."""
        if other is None:
            return self
        mine = self.model_dump(exclude_none=True)
        return MediaMetadata.model_validate(other.model_dump(exclude_none=True) | mine)

    @property
    def empty(self) -> bool:
        return not self.model_dump(exclude_none=True)


METADATA_DESCRIPTION = "What is known of the media: title, author, date (added within version 1)."


class MediaRequest(BaseModel):
    """What a client asks for (the HTTP API's `POST /media` body, the fields of
    `media.requested` a producer sets). Only `url` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=4096, description="The media (http or https).")
    media_id: str | None = Field(
        None, pattern=MEDIA_ID_PATTERN, description="Defaults to one derived from the URL."
    )
    language: str | None = Field(
        None, pattern=r"^[a-z]{2,3}$", description="ISO 639 code; detected when absent."
    )
    captions: Literal["prefer", "never", "only"] | None = Field(
        None, description="Overrides ingest's captions setting for this media."
    )
    callback_url: str | None = Field(
        None,
        max_length=4096,
        description="Where the outcome (indexed or failed) is POSTed once the run ends, signed.",
    )
    metadata: MediaMetadata | None = Field(
        None, description="What the client knows of the media; the site's own fills the rest."
    )


class MediaRequested(Event, MediaRequest):
    """`media.requested`: somebody wants a URL transcribed. Only `url` is required."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run: str | None = Field(None, pattern=RUN_PATTERN, description=RUN_DESCRIPTION)

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
    # on every chunk (a few hundred bytes against hundreds of KiB of audio): chunks are stored
    # in any order, and the first stored names the media while the rest are transcribed
    metadata: MediaMetadata | None = Field(None, description=METADATA_DESCRIPTION)

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
    metadata: MediaMetadata | None = Field(None, description=METADATA_DESCRIPTION)
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


def media_id_for_file(sha256_hex: str) -> str:
    """The id of a file's bytes (their SHA-256): resubmitting a file overwrites its entries."""
    return "f-" + sha256_hex[:20]


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

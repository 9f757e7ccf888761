"""The shapes the API answers with. Requests reuse the event models (`MediaRequest`); records
and hits mirror the ledger's and the index's own, so one definition serves both."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from streamscribe.common.errors import Reason

State = Literal["requested", "transcribing", "indexed", "failed"]


class Accepted(BaseModel):
    """A submission published as `media.requested`."""

    media_id: str
    run: str = Field(description="This submission's run: `status` shows the newest run's state.")
    status: str = Field(description="Where its state can be read.")


class Chunks(BaseModel):
    total: int | None = Field(description="Known once the last chunk is cut.")
    stored: int


class Failure(BaseModel):
    stage: str
    reason: Reason
    detail: str


class SpeechCoverage(BaseModel):
    """What the transcribers' coverage check found in this run (nothing said is dropped
    silently): speech no word covered at first, decoded again; speech still without words."""

    redecoded_seconds: float = 0.0
    uncovered_seconds: float = 0.0


class MediaStatus(BaseModel):
    """The ledger's record of one media (its newest run)."""

    media_id: str
    state: State
    run: str
    source_url: str | None
    chunks: Chunks
    passages: int
    language: str | None
    source: Literal["asr", "captions"] | None
    title: str | None = None
    author: str | None = Field(None, description="Uploader, channel or artist.")
    published: date | None = Field(None, description="Publication date (ISO).")
    duration: float | None = Field(None, description="Seconds, as the source declared them.")
    webpage_url: str | None = Field(None, description="The media's page (http or https).")
    thumbnail_url: str | None = Field(None, description="An image of it (http or https).")
    failure: Failure | None
    speech: SpeechCoverage = Field(default_factory=SpeechCoverage)
    requested_at: str | None
    updated_at: str | None
    indexed_at: str | None
    callback: bool = Field(False, description="Whether the run's outcome will be POSTed.")


class SearchHit(BaseModel):
    """One passage, best first; `start` is its first word that matches when words are known."""

    id: str
    media_id: str
    source_url: str
    start: float
    end: float
    text: str
    score: float
    language: str | None = None
    source: Literal["asr", "captions"] | None = None
    title: str | None = None
    author: str | None = None
    published: date | None = None


class SearchResults(BaseModel):
    hits: list[SearchHit]
    index_empty: bool = Field(description="True when nothing is indexed yet.")


class Forgotten(BaseModel):
    media_id: str
    forgotten: bool

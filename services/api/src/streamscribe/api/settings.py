"""Settings of the HTTP API (`STREAMSCRIBE_API__*`), beside embed's (the index and the query
embedder it reads) and ingest's (the URL guard that vets media and callback URLs, the chunking
of uploaded files)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from streamscribe.embed.settings import EmbedSettings
from streamscribe.ingest.settings import IngestSection

Auth = Literal["keys", "none"]


class ApiSection(BaseModel):
    """Who may call the API, how much, and how long it waits for the pipeline."""

    auth: Auth = Field(
        "keys",
        description="`keys`: once any API key exists (or `admin_key` is set), every request "
        "needs one; until then only loopback clients are served, and a non-loopback bind "
        "refuses to start. `none`: no checks at all, on any address (logged as a warning at "
        "every start).",
    )
    admin_key: SecretStr | None = Field(
        None,
        min_length=24,
        description="A key with scope admin taken from the settings (a deployment's secret), "
        "so a server on a public address can start and create the others with `keys create`.",
    )
    submit_per_minute: int = Field(
        60, ge=1, le=100_000, description="Submissions one key (or client) may make per minute."
    )
    max_upload_bytes: int = Field(
        100 * 2**20,
        ge=1024,
        description="Largest file POST /v1/audio/transcriptions takes (larger: 413).",
    )
    transcription_wait_seconds: float = Field(
        600.0,
        gt=0,
        le=3600,
        description="How long POST /v1/audio/transcriptions waits for the pipeline; past it the "
        "answer names the media id to poll.",
    )
    callback_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="Signs callbacks (HMAC-SHA256 of the body, header X-Streamscribe-Signature); "
        "a submission with a callback_url is refused while it is unset.",
    )
    callback_attempts: int = Field(
        6, ge=1, le=20, description="Tries of one callback before it is given up (logged)."
    )
    callback_backoff_seconds: float = Field(
        1.0, ge=0, le=300, description="First retry delay of a callback; doubles per try."
    )
    callback_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Timeout of one callback request."
    )


class TranscriberModel(BaseModel):
    """The transcribe workers' model, as /v1/models names it (read from the same variable,
    `STREAMSCRIBE_TRANSCRIBE__MODEL`, without importing the transcriber)."""

    model: str = Field("bundled:tiny.en", description="See the transcribe service's settings.")


class ApiSettings(EmbedSettings):
    api: ApiSection = Field(default_factory=ApiSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    transcribe: TranscriberModel = Field(default_factory=TranscriberModel)

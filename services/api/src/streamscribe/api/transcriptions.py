"""OpenAI's audio API, answered by the pipeline: `POST /v1/audio/transcriptions` chunks the
upload with ingest's chunk source and publishes the chunks like `submit FILE` (any transcribe
worker takes any chunk; the ledger records the media), waits for the outcome up to
`api.transcription_wait_seconds`, and answers in OpenAI's shapes. `GET /v1/models` names the
transcribers' model. A `url` form field instead of `file` submits a URL (the guard checks it)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response

from streamscribe.api.auth import READ, SUBMIT
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.media import vet
from streamscribe.api.openai_shapes import ModelList, answer, model_list
from streamscribe.api.state import ApiState, state
from streamscribe.common.delivery import publish_event
from streamscribe.common.errors import MediaError, Reason
from streamscribe.common.events import (
    AudioChunk,
    MediaRequest,
    MediaRequested,
    media_id_for_file,
    new_run,
)
from streamscribe.common.tempfiles import TempRoot
from streamscribe.embed.store.ledger import MediaRecord
from streamscribe.ingest.chunk_source import MediaRef, audio_key, publish_file

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]
POLL_SECONDS = 0.25
COPY_BYTES = 1 << 20
# the media's own fault: the request was bad, not the server
BAD_INPUT = {
    Reason.UNSUPPORTED_LANGUAGE, Reason.UNSUPPORTED_MEDIA, Reason.NO_AUDIO, Reason.DECODE_ERROR,
    Reason.TOO_LONG, Reason.TOO_LARGE, Reason.REFUSED_URL, Reason.NOT_FOUND, Reason.LIVE_STREAM,
    Reason.DOWNLOAD_ERROR, Reason.NO_CAPTIONS, Reason.INVALID_EVENT,
}  # fmt: skip
# the rest (transcribe_error, index_error, interrupted) are the pipeline's own: 502
NO_RETRY = {"x-should-retry": "false"}  # OpenAI's SDKs retry 5xx unless told not to
Api = Annotated[ApiState, Depends(state)]
router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", dependencies=[READ])
async def models(api: Api) -> ModelList:
    """The model that transcribes (and `whisper-1`, the name OpenAI's clients send)."""
    return model_list(api.settings.transcribe.model)


@router.post(
    "/audio/transcriptions",
    dependencies=[SUBMIT],
    response_model=None,
    responses={
        200: {
            "description": "OpenAI's shapes: json and verbose_json, or text, srt, vtt.",
            "content": {
                kind: {"schema": {"type": "string"}}
                for kind in ("text/plain", "application/x-subrip", "text/vtt")
            }
            | {"application/json": {"schema": {"type": "object"}}},
        },
        400: {"model": ErrorBody},
        413: {"model": ErrorBody},
        429: {"model": ErrorBody},
        502: {"model": ErrorBody, "description": "The pipeline failed the media."},
        504: {"model": ErrorBody, "description": "Still transcribing: poll the media."},
    },
)
async def transcriptions(
    api: Api,
    model: Annotated[str, Form(description="`whisper-1` or the name /v1/models lists.")],
    file: Annotated[UploadFile | None, File(description="The audio or video file.")] = None,
    url: Annotated[str | None, Form(description="Instead of `file`: a media URL.")] = None,
    language: Annotated[str | None, Form(pattern=r"^[a-z]{2,3}$")] = None,
    prompt: Annotated[
        str | None, Form(description="Accepted and not used: chunks are decoded independently.")
    ] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    """Transcribe through the pipeline and answer as OpenAI's API does."""
    if model not in model_list(api.settings.transcribe.model).ids:
        raise ApiError(400, f"unknown model {model!r}; GET /v1/models lists the models here")
    if (file is None) == (url is None):
        raise ApiError(400, "send either a `file` or a `url` form field")
    started = time.monotonic()
    if file is not None:
        media_id, run = await _publish_upload(api, file, language)
    else:
        assert url is not None
        media_id, run = await _publish_url(api, url, language)
    record = await _outcome(api, media_id, run, started)
    segments = await api.read(lambda index: list(index.segments(media_id)))
    granularities = set(timestamp_granularities or ["segment"])
    return answer(response_format, granularities, record.language, segments)


async def _publish_upload(
    api: ApiState, upload: UploadFile, language: str | None
) -> tuple[str, str]:
    temp = TempRoot(api.settings.temp_root, "api")
    with temp.job("upload") as job:
        path = job / "media"
        digest = await _save(upload, path, api.settings.api.max_upload_bytes)
        name = upload.filename or "upload"
        run = new_run()
        media = MediaRef(media_id_for_file(digest), f"upload:{quote(name)}", language, run)
        await api.read(lambda index: index.ledger.request(media.media_id, run, media.source_url))
        broker, topic = api.current.broker, api.settings.topics.audio

        async def send(chunk: AudioChunk) -> None:
            await publish_event(broker, topic, chunk, audio_key(chunk))

        try:
            await publish_file(path, media, api.settings.ingest, send, name=name)
        except MediaError as exc:
            raise ApiError(400, f"{exc.reason.value}: {exc.detail}") from exc
    return media.media_id, run


async def _save(upload: UploadFile, path: Path, most: int) -> str:
    """Copy the upload to `path` (413 past `most` bytes); its SHA-256, hex."""
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        while block := await upload.read(COPY_BYTES):
            size += len(block)
            if size > most:
                raise ApiError(413, f"files are at most {most} bytes here")
            digest.update(block)
            await asyncio.to_thread(out.write, block)
    if size == 0:
        raise ApiError(400, "the file is empty")
    return digest.hexdigest()


async def _publish_url(api: ApiState, url: str, language: str | None) -> tuple[str, str]:
    request = MediaRequest(url=url, language=language)
    await vet(api, request)
    event = MediaRequested(**request.model_dump(exclude_none=True), run=new_run())
    run = event.run or ""
    await publish_event(
        api.current.broker, api.settings.topics.requested, event, event.resolved_id.encode()
    )
    await api.read(lambda index: index.ledger.request(event.resolved_id, run, url))
    return event.resolved_id, run


async def _outcome(api: ApiState, media_id: str, run: str, started: float) -> MediaRecord:
    """The media's record once this run is indexed; an error once it failed or time is up."""
    deadline = started + api.settings.api.transcription_wait_seconds
    while time.monotonic() < deadline:
        record = await api.read(lambda index: index.ledger.get(media_id))
        if record is not None and record.run == run and record.state in ("indexed", "failed"):
            if record.state == "indexed":
                return record
            raise _failed(record)
        await asyncio.sleep(POLL_SECONDS)
    raise ApiError(
        504,
        f"{media_id} is still being transcribed; poll GET /media/{media_id} and fetch "
        f"GET /media/{media_id}/transcript once it is indexed",
        NO_RETRY,
    )


def _failed(record: MediaRecord) -> ApiError:
    failure = record.failure or {}
    reason = failure.get("reason", "")
    message = f"{reason}: {failure.get('detail', '')}"
    status = 400 if reason in {r.value for r in BAD_INPUT} else 502
    return ApiError(status, message, NO_RETRY)

"""`/media`: submit a URL, read the ledger's records and transcripts, forget a media."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from streamscribe.api.auth import READ, SUBMIT
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.models import Accepted, Forgotten, MediaStatus
from streamscribe.api.state import ApiState, state
from streamscribe.common.delivery import publish_event
from streamscribe.common.errors import MediaError
from streamscribe.common.events import MEDIA_ID_PATTERN, MediaRequest, MediaRequested, new_run
from streamscribe.common.vocabulary import FORMATS, Format
from streamscribe.embed.store.ledger import MediaRecord
from streamscribe.embed.transcript_format import About, render
from streamscribe.ingest.urlguard import check_url, url_policy

MAX_RECENT = 1000
BLOCKS_PER_READ = 200  # transcript blocks rendered per trip to the database thread
CONTENT_TYPES: dict[Format, str] = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}
assert set(CONTENT_TYPES) == set(FORMATS)

MediaId = Annotated[str, Path(pattern=MEDIA_ID_PATTERN, description="A media id.")]
Api = Annotated[ApiState, Depends(state)]
router = APIRouter(tags=["media"])


@router.post(
    "/media",
    status_code=202,
    dependencies=[SUBMIT],
    responses={422: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)
async def submit(request: MediaRequest, api: Api) -> Accepted:
    """Publish `media.requested` for a URL (checked by ingest's URL guard first) and record it."""
    await vet(api, request)
    event = MediaRequested(**request.model_dump(exclude_none=True), run=new_run())
    media_id, run = event.resolved_id, event.run
    assert run is not None
    await publish_event(api.current.broker, api.settings.topics.requested, event, media_id.encode())
    # recorded at once: `up` resumes what the ledger holds as unfinished
    await api.read(
        lambda index: index.ledger.request(
            media_id, run, event.url, request.callback_url, request.metadata
        )
    )
    return Accepted(media_id=media_id, run=run, status=f"/media/{media_id}")


async def vet(api: ApiState, request: MediaRequest) -> None:
    """422 with the guard's reason for a URL ingest would refuse (and for a callback URL)."""
    policy = url_policy(api.settings.ingest)
    urls = [request.url]
    if request.callback_url is not None:
        if api.settings.api.callback_secret is None:
            raise ApiError(
                422, "callbacks are off here: the operator sets STREAMSCRIBE_API__CALLBACK_SECRET"
            )
        urls.append(request.callback_url)
    for url in urls:
        try:
            await asyncio.to_thread(check_url, url, policy)
        except MediaError as exc:
            raise ApiError(422, exc.detail) from exc


@router.get("/media", dependencies=[READ])
async def recent(
    api: Api, limit: Annotated[int, Query(ge=1, le=MAX_RECENT)] = MAX_RECENT
) -> list[MediaStatus]:
    """The media changed last, newest first."""
    records = await api.read(lambda index: index.ledger.recent(limit))
    return [MediaStatus.model_validate(record.as_dict()) for record in records]


@router.get("/media/{media_id}", dependencies=[READ], responses={404: {"model": ErrorBody}})
async def status(media_id: MediaId, api: Api) -> MediaStatus:
    """The ledger's record of one media."""
    return MediaStatus.model_validate((await _record(api, media_id)).as_dict())


@router.delete(
    "/media/{media_id}",
    dependencies=[SUBMIT],
    responses={404: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)
async def forget(media_id: MediaId, api: Api) -> Forgotten:
    """Remove the media's passages from the index, its transcript and its ledger record; a
    later submission indexes it anew."""
    if not await api.read(lambda index: index.forget(media_id)):
        raise ApiError(404, f"no media {media_id}")
    return Forgotten(media_id=media_id, forgotten=True)


@router.get(
    "/media/{media_id}/transcript",
    dependencies=[READ],
    response_class=StreamingResponse,
    responses={
        200: {"content": {kind: {"schema": {"type": "string"}} for kind in CONTENT_TYPES.values()}},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    },
)
async def transcript(
    media_id: MediaId, api: Api, format: Annotated[Format, Query()] = "txt"
) -> StreamingResponse:
    """The whole transcript of an indexed media, streamed (409 before it is indexed)."""
    record = await _record(api, media_id)
    if record.state != "indexed":
        total = record.chunk_count or "?"
        raise ApiError(
            409,
            f"{media_id} is {record.state}, {record.chunks_stored}/{total} chunks stored: "
            "no whole transcript yet",
        )
    about = About(media_id, record.language, record.source)
    segments = await api.read(lambda index: index.segments(media_id))
    blocks = render(segments, format, about)
    return StreamingResponse(_stream(api, blocks), media_type=CONTENT_TYPES[format])


async def _record(api: ApiState, media_id: str) -> MediaRecord:
    record = await api.read(lambda index: index.ledger.get(media_id))
    if record is None:
        raise ApiError(404, f"no media {media_id}")
    return record


async def _stream(api: ApiState, blocks: Iterator[str]) -> AsyncIterator[bytes]:
    while page := await api.read(lambda _: _take(blocks, BLOCKS_PER_READ)):
        yield "".join(page).encode()


def _take(blocks: Iterator[str], count: int) -> list[str]:
    return [block for _, block in zip(range(count), blocks, strict=False)]

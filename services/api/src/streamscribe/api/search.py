"""`/search`: hybrid, vector or keyword search over every indexed passage."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from streamscribe.api.auth import READ
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.models import SearchHit, SearchResults
from streamscribe.api.state import ApiState, state
from streamscribe.common.events import MEDIA_ID_PATTERN
from streamscribe.embed.store.base import SearchMode
from streamscribe.embed.store.index import HitFilter

MAX_K = 100
router = APIRouter(tags=["search"])


@router.get("/search", dependencies=[READ], responses={400: {"model": ErrorBody}})
async def search(
    api: Annotated[ApiState, Depends(state)],
    q: Annotated[str, Query(max_length=1000, description="What to search for.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many passages.")] = 5,
    mode: Annotated[
        SearchMode | None, Query(description="Default: the embed service's `search_mode`.")
    ] = None,
    media: Annotated[
        str | None, Query(pattern=MEDIA_ID_PATTERN, description="Only this media's passages.")
    ] = None,
    author: Annotated[
        str | None, Query(max_length=200, description="Only media whose author contains this.")
    ] = None,
    since: Annotated[date | None, Query(description="Only media published on or after.")] = None,
    until: Annotated[date | None, Query(description="Only media published on or before.")] = None,
) -> SearchResults:
    """The best passages for `q`, each with its media, times and score; the filters keep
    those of the media that match them all (a date filter leaves out media with no date)."""
    text = q.strip()
    if not text:
        raise ApiError(400, "say what to search for: /search?q=words")
    if since and until and since > until:
        raise ApiError(400, f"since ({since}) is after until ({until}): nothing between")
    only = HitFilter(media, author, since, until)
    chosen: SearchMode = mode or api.settings.embed.search_mode
    vector = None if chosen == "keyword" else await api.embed(text)
    hits = await api.read(lambda index: index.search(text, vector, k, chosen, only))
    empty = not hits and await api.read(lambda index: index.vectors.count() == 0)
    return SearchResults(
        hits=[SearchHit.model_validate(hit.__dict__) for hit in hits], index_empty=empty
    )

"""`/search`: hybrid, vector or keyword search over every indexed passage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from streamscribe.api.auth import READ
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.models import SearchHit, SearchResults
from streamscribe.api.state import ApiState, state
from streamscribe.embed.store.base import SearchMode

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
) -> SearchResults:
    """The best passages for `q`, each with its media, times and score."""
    text = q.strip()
    if not text:
        raise ApiError(400, "say what to search for: /search?q=words")
    chosen: SearchMode = mode or api.settings.embed.search_mode
    vector = None if chosen == "keyword" else await api.embed(text)
    hits = await api.read(lambda index: index.search(text, vector, k, chosen))
    empty = not hits and await api.read(lambda index: index.vectors.count() == 0)
    return SearchResults(
        hits=[SearchHit.model_validate(hit.__dict__) for hit in hits], index_empty=empty
    )

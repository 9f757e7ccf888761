"""`/dead-letters/{topic}` (scope admin): what `streamscribe dlq list|replay` does, over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from streamscribe.api.auth import ADMIN
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.state import ApiState, state
from streamscribe.common.dead_letters import list_dead_letters, replay_dead_letters
from streamscribe.common.errors import ConfigError

Api = Annotated[ApiState, Depends(state)]
Topic = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,200}$", description="e.g. media.audio")]
router = APIRouter(
    prefix="/dead-letters", tags=["dead letters"], dependencies=[ADMIN],
    responses={404: {"model": ErrorBody}},
)  # fmt: skip


class DeadLetterInfo(BaseModel):
    partition: int
    offset: int
    key: str | None
    stage: str | None
    attempts: str | None
    error: str | None
    origin: str | None
    body: str


class Replayed(BaseModel):
    replayed: int


@router.get("/{topic}")
async def listed(topic: Topic, api: Api) -> list[DeadLetterInfo]:
    """Every dead letter of the topic, with its stage, attempts and error."""
    try:
        letters = await list_dead_letters(api.settings, topic)
    except ConfigError as exc:
        raise ApiError(404, str(exc)) from exc
    return [DeadLetterInfo.model_validate(letter.as_dict()) for letter in letters]


@router.post("/{topic}/replay")
async def replay(topic: Topic, api: Api) -> Replayed:
    """Re-publish the topic's dead letters not replayed before, with fresh attempts."""
    try:
        return Replayed(replayed=await replay_dead_letters(api.settings, topic))
    except ConfigError as exc:
        raise ApiError(404, str(exc)) from exc

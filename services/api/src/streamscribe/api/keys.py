"""`/keys` (scope admin): create a key (its secret shown once; only its hash is stored), list
them, revoke one. `streamscribe keys` is the client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from streamscribe.api.auth import ADMIN
from streamscribe.api.errors import ApiError, ErrorBody
from streamscribe.api.state import ApiState, state
from streamscribe.common.vocabulary import Scope
from streamscribe.embed.store.keys import KeyRecord

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Api = Annotated[ApiState, Depends(state)]
router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[ADMIN])


class NewKey(BaseModel):
    name: str = Field(pattern=NAME, description="Unique among the keys not revoked.")
    scope: Scope = Field(description="read (search, status, transcripts) ⊂ submit ⊂ admin.")


class KeyInfo(BaseModel):
    name: str
    scope: Scope
    created_at: str
    revoked_at: str | None = None


class CreatedKey(KeyInfo):
    key: str = Field(description="The secret: shown this once, never stored.")


@router.post("", status_code=201, responses={409: {"model": ErrorBody}})
async def create(new: NewKey, api: Api) -> CreatedKey:
    """A new key; its secret is in this answer only."""
    try:
        record, secret = await api.keys(lambda keys: keys.create(new.name, new.scope))
    except ValueError as exc:
        raise ApiError(409, str(exc)) from exc
    return CreatedKey(**_info(record).model_dump(), key=secret)


@router.get("")
async def listed(api: Api) -> list[KeyInfo]:
    """Every key, revoked ones too, without their secrets."""
    return [_info(record) for record in await api.keys(lambda keys: keys.list())]


@router.delete("/{name}", responses={404: {"model": ErrorBody}})
async def revoke(name: Annotated[str, Path(pattern=NAME)], api: Api) -> KeyInfo:
    """Revoke a key by name: its next request is refused."""
    if not await api.keys(lambda keys: keys.revoke(name)):
        raise ApiError(404, f"no key {name} (or it is revoked already)")
    found = [r for r in await api.keys(lambda keys: keys.list()) if r.name == name]
    return _info(found[-1])


def _info(record: KeyRecord) -> KeyInfo:
    return KeyInfo(
        name=record.name,
        scope=record.scope,
        created_at=_iso(record.created_at) or "",
        revoked_at=_iso(record.revoked_at),
    )


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()

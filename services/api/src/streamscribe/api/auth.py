"""API keys with scopes on every route (`Depends(read)`, `submit`, `admin`).

With auth `keys` (the default): until any key exists (stored, or `admin_key` in the settings)
only loopback clients are served, and `app.check_exposure` refuses to bind elsewhere; once one
exists, every request needs `Authorization: Bearer KEY` whose scope covers the route's (admin ⊇
submit ⊇ read), from loopback too. With auth `none` nothing is checked.

The page's session cookie (`COOKIE`, set by `/key`: HttpOnly, SameSite=Strict) carries a key the
same way, so the page's own links and scripts reach the JSON routes; a Bearer header wins over it.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from streamscribe.api.errors import ApiError
from streamscribe.api.state import ApiState, state
from streamscribe.common.vocabulary import Scope
from streamscribe.embed.store.keys import allows

BEARER = HTTPBearer(auto_error=False, description="An API key: `streamscribe keys create`.")
COOKIE = "streamscribe_key"
NO_KEY = (
    "send an API key: Authorization: Bearer KEY (STREAMSCRIBE_API_KEY for the CLI; "
    "`streamscribe keys create NAME --scope read` makes one)"
)


@dataclass(frozen=True)
class Caller:
    """Who is asking: a key's name and scope, or the loopback/open access without keys."""

    name: str
    scope: Scope


async def caller(
    request: Request,
    api: Annotated[ApiState, Depends(state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    """The caller of this request, or 401."""
    section = api.settings.api
    if section.auth == "none":
        return Caller("anyone", "admin")
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    if token:
        found = await holder(api, token)
        if found is None:
            raise ApiError(401, "this API key is unknown or revoked", _challenge())
        return found
    if section.admin_key is None and not await api.keys(lambda keys: keys.any_active()):
        if _loopback(request):
            return Caller("loopback", "admin")
        raise ApiError(401, "without API keys this API serves loopback clients only; " + NO_KEY)
    raise ApiError(401, NO_KEY, _challenge())


async def holder(api: ApiState, token: str) -> Caller | None:
    """Who holds `token`: the settings' admin key or a stored key; None if unknown or revoked."""
    if _is_admin_key(token, api.settings.api.admin_key):
        return Caller("admin_key", "admin")
    record = await api.keys(lambda keys: keys.verify(token))
    return None if record is None else Caller(record.name, record.scope)


def _is_admin_key(token: str, admin_key: SecretStr | None) -> bool:
    return admin_key is not None and hmac.compare_digest(
        token.encode(), admin_key.get_secret_value().encode()
    )


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"}


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a Unix socket or a test client's made-up name: not loopback
        return False


def needs(scope: Scope) -> Any:
    """A dependency that lets through callers whose scope covers `scope`, else 403."""

    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not allows(who.scope, scope):
            raise ApiError(403, f"this key has scope {who.scope}; this needs {scope} or above")
        return who

    return Depends(check)


async def submitter(
    who: Annotated[Caller, needs("submit")], api: Annotated[ApiState, Depends(state)]
) -> Caller:
    """A caller with scope submit, within its rate of submissions (else 429, Retry-After)."""
    wait = api.limiter.take(who.name)
    if wait > 0:
        raise ApiError(
            429,
            f"{who.name} made more than {api.settings.api.submit_per_minute} submissions in a "
            f"minute; try again in {wait:.0f} s",
            {"Retry-After": str(max(1, round(wait)))},
        )
    return who


READ = needs("read")
ADMIN = needs("admin")
SUBMIT = Depends(submitter)

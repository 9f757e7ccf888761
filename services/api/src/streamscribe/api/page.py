"""The page: the API's own HTML (search, a media with its player and transcript, the library),
server-rendered so it works without JavaScript; `static/page.js` adds the player's highlight and
the library's live progress. Its routes stay out of the OpenAPI document, which is the JSON
API's. They take the same keys: a Bearer header, or the session cookie the key form sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from streamscribe.api import media, page_view, search
from streamscribe.api.auth import BEARER, COOKIE, Caller, caller, holder, submitter
from streamscribe.api.errors import ApiError
from streamscribe.api.models import MediaStatus
from streamscribe.api.state import ApiState, state
from streamscribe.common.events import MEDIA_ID_PATTERN, MediaRequest
from streamscribe.common.vocabulary import MODES, SearchMode
from streamscribe.embed.store.keys import allows

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.filters.update(clock=page_view.clock, named=page_view.title_of)
TEMPLATES.env.globals.update(states=page_view.STATES, failure_words=page_view.failure_words)
LIBRARY_SIZE = 100
HITS = 10
# Media play from wherever they are; everything else only from here (no inline script).
POLICY = (
    "default-src 'self'; media-src * data: blob:; img-src 'self' http: https: data:; "
    "script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
Api = Annotated[ApiState, Depends(state)]
router = APIRouter(include_in_schema=False)


class KeyNeededError(Exception):
    """The page needs a key this browser has not given (or one no longer valid)."""


async def viewer(
    request: Request,
    api: Api,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    """The page's caller; a 401 becomes the key form instead of JSON."""
    try:
        return await caller(request, api, credentials)
    except ApiError as exc:
        if exc.status == 401:
            raise KeyNeededError(str(exc)) from exc
        raise


Viewer = Annotated[Caller, Depends(viewer)]
VIEW = Depends(viewer)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("keyed", bool(request.cookies.get(COOKIE)))
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(
        {
            "Content-Security-Policy": POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",  # pages show what a key may read
        }
    )
    return response


@router.get("/", response_class=HTMLResponse, dependencies=[VIEW])
async def search_page(
    request: Request, api: Api, q: str = "", mode: str | None = None
) -> HTMLResponse:
    """The search form; with `q`, the hits in the HTML itself."""
    chosen: SearchMode = api.settings.embed.search_mode
    if mode in MODES:
        chosen = mode
    query = q.strip()[:1000]
    found = await search.search(api, query, HITS, chosen) if query else None
    shown = found.hits if found else []
    hits = [{"hit": hit, "parts": page_view.marked(hit.text, query)} for hit in shown]
    empty = found is not None and found.index_empty
    return render(
        request,
        "search.html",
        here="search",
        q=query,
        mode=chosen,
        modes=MODES,
        hits=hits,
        index_empty=empty,
    )


@router.get("/watch/{media_id}", response_class=HTMLResponse, dependencies=[VIEW])
async def watch_page(
    request: Request,
    api: Api,
    media_id: Annotated[str, PathParam(pattern=MEDIA_ID_PATTERN)],
    t: Annotated[float, Query(ge=0)] = 0.0,
) -> HTMLResponse:
    """A media: its player at second `t`, its transcript with the sentence at `t` current."""
    record = await api.read(lambda index: index.ledger.get(media_id))
    if record is None:
        return render(request, "missing.html", 404, media_id=media_id)
    status = MediaStatus.model_validate(record.as_dict())
    lines = await api.read(lambda index: [s for s in index.segments(media_id) if s.text.strip()])
    current = max((i for i, s in enumerate(lines) if s.start <= t + 0.05), default=None)
    player = page_view.player_for(status.source_url, getattr(status, "webpage_url", None), t)
    return render(
        request, "watch.html", media=status, lines=lines, current=current, start=t, player=player
    )


@router.get("/library", response_class=HTMLResponse, dependencies=[VIEW])
async def library_page(request: Request, api: Api, submitted: str | None = None) -> HTMLResponse:
    return await _library(request, api, submitted=submitted)


async def _library(
    request: Request, api: ApiState, status: int = 200, **context: Any
) -> HTMLResponse:
    records = await api.read(lambda index: index.ledger.recent(LIBRARY_SIZE))
    shown = [MediaStatus.model_validate(record.as_dict()) for record in records]
    busy = any(m.state in ("requested", "transcribing") for m in shown)
    return render(
        request,
        "library.html",
        status,
        here="library",
        items=shown,
        busy=busy,
        limit=LIBRARY_SIZE,
        **context,
    )


@router.post("/library", response_class=HTMLResponse)
async def submit_form(
    request: Request, api: Api, who: Viewer, url: Annotated[str, Form(max_length=4096)]
) -> Response:
    """POST /media from the library's form, then back to the library (303: a reload does not
    submit again)."""
    refused = _cross_site(request)
    if refused is None and not allows(who.scope, "submit"):
        refused = f"this key has scope {who.scope}; submitting needs submit or above"
    if refused is None:
        try:
            await submitter(who, api)
            accepted = await media.submit(MediaRequest(url=url.strip()), api)
        except ApiError as exc:
            refused = str(exc)
        except ValidationError as exc:
            refused = "; ".join(str(error["msg"]) for error in exc.errors())
        else:
            return RedirectResponse(f"/library?submitted={accepted.media_id}", 303)
    return await _library(request, api, 422, error=refused, url=url)


@router.get("/key", response_class=HTMLResponse)
async def key_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "key.html", 200, next=page_view.safe_next(next))


@router.post("/key", response_class=HTMLResponse)
async def key_given(
    request: Request,
    api: Api,
    key: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the key, keep it in a session cookie scripts cannot read, go back where asked."""
    target = page_view.safe_next(next)
    refused = _cross_site(request)
    if refused is None and await holder(api, key.strip()) is None:
        refused = "this API key is unknown or revoked"
    if refused is not None:
        return render(request, "key.html", 401, next=target, error=refused)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE, key.strip(), httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    return response


@router.post("/key/forget")
async def key_forgotten(request: Request) -> Response:
    if (refused := _cross_site(request)) is not None:
        raise ApiError(403, refused)
    response = RedirectResponse("/key", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _cross_site(request: Request) -> str | None:
    """Why a form POST is refused: another site made it (a loopback API without keys would
    otherwise take any page's forms as its user's)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if site not in (None, "same-origin", "none") or (
        origin is not None and origin.split("://", 1)[-1] != host
    ):
        return "refused: this form was sent from another site"
    return None


def install(app: FastAPI) -> None:
    """The page's routes, its assets, and the key form where the JSON API would answer 401."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(KeyNeededError)
    async def key_needed(request: Request, exc: KeyNeededError) -> HTMLResponse:
        where = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return render(request, "key.html", 401, next=page_view.safe_next(where), asked=True)

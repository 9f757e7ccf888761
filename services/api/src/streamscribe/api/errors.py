"""Every refusal is JSON, `{"error": "<what to do>"}`, with its status: the API's own, FastAPI's
validation errors, unknown paths and methods, and an index that is not there yet."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from streamscribe.common.errors import StreamscribeError

log = logging.getLogger(__name__)


EVERY_ROUTE = {
    401: "No API key, or an unknown or revoked one.",
    403: "The key's scope does not cover this route.",
    422: "A parameter or the body is not valid.",
    503: "The index is not open yet, or failed; try again.",
}


class ErrorBody(BaseModel):
    """What every refusal carries."""

    error: str


class ApiError(StreamscribeError):
    """A request the API refuses: `status` and a message saying what to do instead."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def refusal(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers)


def validation_summary(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers that make every error JSON."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return refusal(exc.status, str(exc), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return refusal(422, validation_summary(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return refusal(404, f"no such path {request.url.path}; /docs lists the API's paths")
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return refusal(405, f"{request.url.path} accepts {allowed}", exc.headers)
        return refusal(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(StreamscribeError)
    async def unavailable(request: Request, exc: StreamscribeError) -> JSONResponse:
        # the index or the broker failed under us: worth another try
        log.warning("api: %s %s failed: %s", request.method, request.url.path, exc)
        return refusal(503, f"{exc}; try again shortly", {"Retry-After": "5"})

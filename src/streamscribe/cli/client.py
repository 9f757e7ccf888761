"""The CLI's client of the pipeline's HTTP API (served by embed; see the README's "The HTTP
API"): `status`, `search`, `transcript` and `submit --wait` ask the running pipeline, so they
work from any host that reaches it and load no model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from streamscribe.common.errors import StreamscribeError
from streamscribe.common.settings import CommonSettings, ServiceSection

TIMEOUT_SECONDS = 30.0


class ApiError(StreamscribeError):
    """The API refused a request (`status`: its HTTP status) or could not be reached (0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def api_url(option: str | None, settings: CommonSettings, embed: ServiceSection) -> str:
    """`--api`, else STREAMSCRIBE_API_URL, else the local embed service's port."""
    if option or settings.api_url:
        return str(option or settings.api_url).rstrip("/")
    host = "127.0.0.1" if embed.http_host in ("0.0.0.0", "::", "") else embed.http_host
    return f"http://{host}:{embed.http_port}"


class ApiClient:
    def __init__(self, base_url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def media(self, media_id: str) -> dict[str, Any] | None:
        """The ledger's record of one media; None when the pipeline does not know it."""
        response = self._get(f"/media/{media_id}")
        return None if response.status_code == 404 else _json(response)

    def recent(self) -> list[dict[str, Any]]:
        """The media changed last, newest first."""
        return list(_json(self._get("/media")))

    def search(self, query: str, k: int, mode: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"q": query, "k": k} | ({"mode": mode} if mode else {})
        return dict(_json(self._get("/search", params=params)))

    @contextmanager
    def transcript(self, media_id: str, fmt: str) -> Iterator[Iterator[str]]:
        """The transcript's text, piece by piece as the API streams it."""
        url = f"/media/{media_id}/transcript"
        with self._call(lambda: self._http.stream("GET", url, params={"format": fmt})) as got:
            if got.status_code != 200:
                got.read()
                _json(got)
            yield got.iter_text()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        with self._call(lambda: _entered(self._http.get(path, params=params))) as response:
            return response

    @contextmanager
    def _call(self, request: Any) -> Iterator[httpx.Response]:
        try:
            with request() as response:
                yield response
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the streamscribe HTTP API at {self.base_url} ({_reason(exc)}); "
                "is the pipeline up (`streamscribe up`, or `streamscribe worker embed`)? "
                "Point --api or STREAMSCRIBE_API_URL at the embed service's port otherwise."
            ) from exc


@contextmanager
def _entered(response: httpx.Response) -> Iterator[httpx.Response]:
    yield response


def _reason(exc: httpx.TransportError) -> str:
    return "connection refused" if isinstance(exc, httpx.ConnectError) else type(exc).__name__


def _json(response: httpx.Response) -> Any:
    """The body of a success; an `ApiError` with the API's own message otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        return body
    message = body.get("error") if isinstance(body, dict) else None
    raise ApiError(message or f"HTTP {response.status_code} from the API", response.status_code)

"""The CLI's client of the pipeline's HTTP API (served by embed; see the README's "The HTTP
API"): `status`, `search`, `transcript` and `submit --wait` ask the running pipeline, so they
work from any host that reaches it and load no model. The standard library's HTTP client:
a command's start-up time is most of what `search` costs."""

from __future__ import annotations

import codecs
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPResponse
from typing import Any

from streamscribe.common.errors import StreamscribeError
from streamscribe.common.settings import CommonSettings, ServiceSection

TIMEOUT_SECONDS = 30.0
READ_BYTES = 64 * 1024


class ApiError(StreamscribeError):
    """The API refused a request (`status`: its HTTP status) or could not be reached (0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def api_url(option: str | None, settings: CommonSettings, embed: ServiceSection) -> str:
    """`--api`, else STREAMSCRIBE_API_URL, else the local embed service's port."""
    if option and not option.startswith(("http://", "https://")):
        raise ApiError(f"--api takes an http:// or https:// URL, not {option!r}")
    if option or settings.api_url:
        return str(option or settings.api_url).rstrip("/")
    host = "127.0.0.1" if embed.http_host in ("0.0.0.0", "::", "") else embed.http_host
    return f"http://{host}:{embed.http_port}"


class ApiClient:
    def __init__(
        self, base_url: str, timeout: float = TIMEOUT_SECONDS, key: str | None = None
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def close(self) -> None:
        """Nothing held between requests (one connection each)."""

    def media(self, media_id: str) -> dict[str, Any] | None:
        """The ledger's record of one media; None when the pipeline does not know it."""
        try:
            return dict(self._json(f"/media/{urllib.parse.quote(media_id, safe='')}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def recent(self) -> list[dict[str, Any]]:
        """The media changed last, newest first."""
        return list(self._json("/media"))

    def search(
        self, query: str, k: int, mode: str | None, filters: dict[str, str | None] | None = None
    ) -> dict[str, Any]:
        """`filters`: `media`, `author`, `since`, `until` (ISO dates); None ones are not sent."""
        params: dict[str, Any] = {"q": query, "k": k} | ({"mode": mode} if mode else {})
        params |= {name: value for name, value in (filters or {}).items() if value is not None}
        return dict(self._json("/search", params))

    def forget(self, media_id: str) -> bool:
        """Remove the media from the index and the ledger; False when it is unknown."""
        return self._delete(f"/media/{urllib.parse.quote(media_id, safe='')}")

    def create_key(self, name: str, scope: str) -> dict[str, Any]:
        """A new API key; its secret is in the answer only."""
        return dict(self._json("/keys", body={"name": name, "scope": scope}, method="POST"))

    def keys(self) -> list[dict[str, Any]]:
        return list(self._json("/keys"))

    def revoke_key(self, name: str) -> bool:
        """False when no active key has the name."""
        return self._delete(f"/keys/{urllib.parse.quote(name, safe='')}")

    def _delete(self, path: str) -> bool:
        try:
            self._json(path, method="DELETE")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    @contextmanager
    def transcript(self, media_id: str, fmt: str) -> Iterator[Iterator[str]]:
        """The transcript's text, piece by piece as the API streams it."""
        path = f"/media/{urllib.parse.quote(media_id, safe='')}/transcript"
        with self._open(path, {"format": fmt}) as response:
            yield _text(response)

    def _json(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        method: str = "GET",
    ) -> Any:
        with self._open(path, params, body, method) as response:
            return json.loads(response.read())

    @contextmanager
    def _open(
        self, path: str, params: dict[str, Any] | None, body: Any = None, method: str = "GET"
    ) -> Iterator[HTTPResponse]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers | ({"Content-Type": "application/json"} if data else {})
        # base_url is http(s) only (`api_url` checks it): no file:// or other scheme
        request = urllib.request.Request(
            f"{self.base_url}{path}{query}", data, headers, method=method
        )
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _refusal(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                f"cannot reach the streamscribe HTTP API at {self.base_url} ({reason}); "
                "is the pipeline up (`streamscribe up`, or `streamscribe worker embed`)? "
                "Point --api or STREAMSCRIBE_API_URL at the embed service's port otherwise."
            ) from exc
        with response:
            yield response


def _text(response: HTTPResponse) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    while block := response.read(READ_BYTES):
        yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def _refusal(status: int, body: bytes) -> ApiError:
    """The API's own message (`{"error": ...}`), else the status."""
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    return ApiError(message or f"HTTP {status} from the API", status)

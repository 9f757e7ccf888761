"""The pipeline's HTTP API, served by embed: the service that owns the ledger and the index, and
keeps the embedding model loaded (a search costs one query embedding, not a model load).

    POST /media                      {"url", "language"?, "media_id"?} -> media.requested, 202
    GET  /media                      ?limit=1000: the media changed last, newest first
    GET  /media/{id}                 the ledger's record of one media
    GET  /media/{id}/transcript      ?format=txt|srt|vtt|json, once indexed (409 before)
    GET  /search                     ?q=...&k=5&mode=hybrid|vector|keyword
    GET  /openapi.json               the OpenAPI document of the above

Errors are JSON: `{"error": "<what to do>"}` with 400, 404, 409, 413, 422 or 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs

from faststream.asgi.types import Receive, Scope, Send
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from streamscribe.common.delivery import publish_event
from streamscribe.common.errors import StreamscribeError
from streamscribe.common.events import MediaRequested, new_run
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.openapi import OPENAPI
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.base import SearchMode
from streamscribe.embed.store.index import Index
from streamscribe.embed.transcript_format import FORMATS, About, Format, render

MAX_BODY_BYTES = 64 * 1024
MAX_K = 100
MAX_RECENT = 1000
BLOCKS_PER_READ = 200  # transcript blocks rendered per trip to the database thread
MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "keyword")
CONTENT_TYPES: dict[str, str] = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}
log = logging.getLogger(__name__)
T = TypeVar("T")


class HttpError(StreamscribeError):
    """A request the API refuses: `status` and a message saying what to do instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    body: bytes | AsyncIterator[bytes]
    content_type: str = "application/json"


def json_response(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode() + b"\n")


Route = Callable[[dict[str, str], Scope, bytes], Awaitable[Response]]


class MediaApi:
    """The routes, on a connection to the index of their own (the consumer's is busy in its
    own threads), used one request step at a time."""

    def __init__(self, settings: EmbedSettings) -> None:
        self.broker: KafkaBroker | None = None
        self.settings = settings
        self.index: Index | None = None
        self.embedder: TextEmbedder | None = None
        self._lock = asyncio.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("POST", re.compile(r"/media"), self.submit),
            ("GET", re.compile(r"/media"), self.recent),
            ("GET", re.compile(r"/media/(?P<id>[^/]+)"), self.status),
            ("GET", re.compile(r"/media/(?P<id>[^/]+)/transcript"), self.transcript),
            ("GET", re.compile(r"/search"), self.search),
            ("GET", re.compile(r"/openapi\.json"), self.openapi),
        ]

    def open(self, index: Index, embedder: TextEmbedder, broker: KafkaBroker) -> None:
        """Serve from `index` and `embedder`; publish requests with `broker`."""
        self.index, self.embedder, self.broker = index, embedder, broker

    def is_open(self) -> bool:
        return self.index is not None

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None

    def handles(self, path: str) -> bool:
        return any(pattern.fullmatch(path) for _, pattern, _ in self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._dispatch(scope, receive)
        except HttpError as exc:
            response = json_response(exc.status, {"error": str(exc)})
        except StreamscribeError as exc:  # the index is unavailable: worth another try
            log.warning("api: %s %s failed: %s", scope["method"], scope["path"], exc)
            response = json_response(503, {"error": str(exc)})
        await _send(response, send)

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        allowed = []
        for method, pattern, route in self._routes:
            if match := pattern.fullmatch(scope["path"]):
                if method == scope["method"]:
                    return await route(match.groupdict(), scope, await _body(receive))
                allowed.append(method)
        raise HttpError(405, f"{scope['path']} accepts {', '.join(allowed)}")

    async def _read(self, work: Callable[[Index], T]) -> T:
        """`work` on the API's own connection, off the event loop, one at a time."""
        if self.index is None:
            raise HttpError(503, "the index is not open yet; try again once /readyz says ready")
        index = self.index
        async with self._lock:
            return await asyncio.to_thread(work, index)

    async def submit(self, _: dict[str, str], scope: Scope, body: bytes) -> Response:
        try:
            fields = json.loads(body or b"null")
            if not isinstance(fields, dict):
                raise HttpError(400, 'send a JSON object: {"url": "https://..."}')
            allowed = {k: fields[k] for k in ("url", "media_id", "language") if k in fields}
            event = MediaRequested(**allowed, run=new_run())
        except (ValueError, ValidationError) as exc:
            raise HttpError(422, f"invalid request: {_summary(exc)}") from exc
        media_id, run = event.resolved_id, event.run
        assert run is not None
        if self.broker is None:
            raise HttpError(503, "not connected yet; try again once /readyz says ready")
        await publish_event(self.broker, self.settings.topics.requested, event, media_id.encode())
        # recorded at once: `up` resumes what the ledger holds as unfinished
        await self._read(lambda index: index.ledger.request(media_id, run, event.url))
        return json_response(
            202, {"media_id": media_id, "run": run, "status": f"/media/{media_id}"}
        )

    async def recent(self, _: dict[str, str], scope: Scope, body: bytes) -> Response:
        limit = _bounded(_query(scope).get("limit", str(MAX_RECENT)), "limit", MAX_RECENT)
        records = await self._read(lambda index: index.ledger.recent(limit))
        return json_response(200, [record.as_dict() for record in records])

    async def status(self, params: dict[str, str], scope: Scope, body: bytes) -> Response:
        record = await self._read(lambda index: index.ledger.get(params["id"]))
        if record is None:
            raise HttpError(404, f"no media {params['id']}")
        return json_response(200, record.as_dict())

    async def transcript(self, params: dict[str, str], scope: Scope, body: bytes) -> Response:
        media_id = params["id"]
        fmt = _query(scope).get("format", "txt")
        if fmt not in FORMATS:
            raise HttpError(400, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        record = await self._read(lambda index: index.ledger.get(media_id))
        if record is None:
            raise HttpError(404, f"no media {media_id}")
        if record.state != "indexed":
            total = record.chunk_count or "?"
            raise HttpError(
                409,
                f"{media_id} is {record.state}, {record.chunks_stored}/{total} chunks stored: "
                "no whole transcript yet",
            )
        about = About(media_id, record.language, record.source)
        segments = await self._read(lambda index: index.segments(media_id))
        blocks = render(segments, _format(fmt), about)
        return Response(200, self._stream(blocks), CONTENT_TYPES[fmt])

    async def _stream(self, blocks: Iterator[str]) -> AsyncIterator[bytes]:
        while page := await self._read(lambda _: _take(blocks, BLOCKS_PER_READ)):
            yield "".join(page).encode()

    async def search(self, _: dict[str, str], scope: Scope, body: bytes) -> Response:
        query = _query(scope)
        text = query.get("q", "").strip()
        if not text:
            raise HttpError(400, "say what to search for: /search?q=words")
        k = _bounded(query.get("k", "5"), "k", MAX_K)
        mode = query.get("mode") or self.settings.embed.search_mode
        if mode not in MODES:
            raise HttpError(400, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        vector = None
        if mode != "keyword" and self.embedder is not None:
            vector = (await asyncio.to_thread(self.embedder.embed, [text]))[0]
        hits = await self._read(lambda index: index.search(text, vector, k, _mode(mode)))
        empty = not hits and await self._read(lambda index: index.vectors.count() == 0)
        result = {"hits": [hit.__dict__ for hit in hits], "index_empty": empty}
        return json_response(200, result)

    async def openapi(self, *_: Any) -> Response:
        return json_response(200, OPENAPI)


def _format(fmt: str) -> Format:
    return next(f for f in FORMATS if f == fmt)


def _mode(mode: str) -> SearchMode:
    return next(m for m in MODES if m == mode)


def _bounded(value: str, name: str, most: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= most:
        raise HttpError(400, f"{name} must be a whole number from 1 to {most}")
    return number


def _take(blocks: Iterator[str], count: int) -> list[str]:
    return [block for _, block in zip(range(count), blocks, strict=False)]


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("utf-8", "replace")
    return {name: values[-1] for name, values in parse_qs(raw).items()}


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, f"request bodies are at most {MAX_BODY_BYTES} bytes")
        if not message.get("more_body"):
            return body


async def _send(response: Response, send: Send) -> None:
    headers = [(b"content-type", response.content_type.encode())]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if isinstance(response.body, bytes):
        await send({"type": "http.response.body", "body": response.body})
        return
    async for piece in response.body:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})

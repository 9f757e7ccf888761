"""The egress proxy: yt-dlp reaches the network only through it, so every hop it makes (the page,
each redirect, the media URLs it extracts, every fragment) meets the URL policy where the
connection is made, not only where a URL was first seen.

Each request's host is resolved once, every address is checked with urlguard's policy, and the
connection goes to a checked address, so a second DNS answer cannot differ from the one checked
(DNS rebinding). Plain HTTP arrives as absolute-URI requests and is forwarded one request per
connection (`Connection: close` upstream); HTTPS arrives as `CONNECT host:port` and is tunnelled,
so TLS stays end to end. Any destination port is allowed: the address decides whether a request
reaches inside, and media servers listen on all sorts of ports.

One proxy serves one download job, on an ephemeral loopback port, on an event loop in a thread of
its own. So what it refuses is that job's failure, its byte budget and deadline are that job's,
closing it ends whatever connection yt-dlp left behind, and the bytes never touch the service's
event loop. A refusal is answered `403` with the reason in `X-Streamscribe-Refused`, and recorded:
yt-dlp only reports an HTTP error, so the downloader asks the proxy why (`failure`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.urlguard import IPAddress, UrlPolicy, check_url

log = logging.getLogger(__name__)

REFUSED_HEADER = "X-Streamscribe-Refused"
_BLOCK = 64 * 1024  # read size, and the bound of every buffer (and of a request head)
# Hop-by-hop headers are the proxy's to set; `Transfer-Encoding` stays since bodies pass as is.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)
_STATUS = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}


@dataclass(frozen=True)
class Failure:
    """Why the proxy stopped serving a job: a refused hop or a cap reached."""

    reason: Reason
    detail: str


@dataclass(frozen=True)
class Limits:
    """Caps of one job, enforced on the bytes themselves rather than on declared sizes."""

    probe_bytes: int  # pages, manifests and API answers: yt-dlp holds them in memory
    download_bytes: int  # the media, counted from `start_download()`
    idle_seconds: float  # longest silence of a destination, and longest wait for a slow client
    deadline_seconds: float  # the whole job: ends endless and trickling streams


class _RefusedError(Exception):
    """A request the proxy answers with an error status instead of forwarding."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EgressProxy:
    """The proxy of one job; runs on one event loop."""

    def __init__(self, policy: UrlPolicy, limits: Limits) -> None:
        self._policy = policy
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._deadline: asyncio.TimerHandle | None = None
        self._received = 0
        self._budget = (limits.probe_bytes, "pages and manifests read while probing")
        self.failure: Failure | None = None  # the first; later requests are all refused
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_BLOCK)
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._limits.deadline_seconds, self._expire)

    async def close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def start_download(self) -> None:
        """Probing is over: from now on the download's byte budget applies."""
        self._received = 0
        self._budget = (self._limits.download_bytes, "the download")

    def _fail(self, failure: Failure) -> None:
        """Record the job's first failure; a cap also ends every connection."""
        if self.failure is None:
            self.failure = failure
            log.info("egress proxy: %s", failure.detail)
        if failure.reason is not Reason.REFUSED_URL:
            for task in self._connections:
                task.cancel()

    def _expire(self) -> None:
        seconds = self._limits.deadline_seconds
        self._fail(Failure(Reason.TOO_LONG, f"the download took longer than {seconds:g} s"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except _RefusedError as refused:
            await _answer(writer, refused.status, str(refused))
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.LimitOverrunError):
            pass  # the client or the destination went away, or sent nonsense: drop it
        except asyncio.CancelledError:
            pass  # closed by the proxy; ending quietly keeps asyncio from logging it as an error
        finally:
            writer.close()
            self._connections.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._limits.idle_seconds)
        request_line, *headers = head.decode("latin-1").split("\r\n")[:-2]
        try:
            method, target, _ = request_line.split(" ")
        except ValueError:
            raise _RefusedError(400, f"malformed request line {request_line[:200]!r}") from None
        if self.failure is not None:
            raise _RefusedError(403, self.failure.detail)
        if method.upper() == "CONNECT":
            upstream = await self._open(f"https://{target}/", "CONNECT", tunnel=True)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._relay(reader, writer, *upstream, framed=False)
        else:
            parts = urlsplit(target)
            upstream = await self._open(target, method, tunnel=False)
            upstream[1].write(_origin_request(method, parts, headers))
            await self._relay(reader, writer, *upstream, framed=True)

    async def _open(
        self, url: str, method: str, tunnel: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Check `url` and connect to one of its checked addresses."""
        addresses = await self._check(url, method)
        parts = urlsplit(url)
        if tunnel and (parts.path != "/" or parts.query or parts.port is None):
            raise _RefusedError(400, "CONNECT needs a host:port target")
        if not tunnel and parts.scheme.lower() != "http":
            raise _RefusedError(400, "only http:// is forwarded; https:// goes through CONNECT")
        return await self._connect(addresses, parts.port or 80, parts.netloc)

    async def _check(self, url: str, method: str) -> list[IPAddress]:
        try:
            return await asyncio.to_thread(check_url, url, self._policy)
        except MediaError as exc:
            detail = f"{method} through the egress proxy: {exc.detail}"
            self._fail(Failure(Reason.REFUSED_URL, detail))
            raise _RefusedError(403, detail) from exc

    async def _connect(
        self, addresses: list[IPAddress], port: int, where: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        errors = []
        for address in addresses:
            try:
                # A numeric host: the address connected to is the one checked, no lookup.
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        str(address), port, limit=_BLOCK, flags=socket.AI_NUMERICHOST
                    ),
                    self._limits.idle_seconds,
                )
            except (OSError, TimeoutError) as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
        raise _RefusedError(502, f"cannot connect to {where[:200]} ({'; '.join(errors)})")

    async def _relay(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        framed: bool,
    ) -> None:
        """Copy both ways until either side ends; only what comes in counts against the budget.
        The client may stay silent for a whole download, so only the destination has an idle
        limit. A plain-HTTP answer (`framed`) ends at its declared length."""
        incoming = (
            self._answer(upstream_reader, client_writer)
            if framed
            else self._pipe(upstream_reader, client_writer, incoming=True)
        )
        pipes = [
            asyncio.create_task(incoming),
            asyncio.create_task(self._pipe(client_reader, upstream_writer, incoming=False)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            upstream_writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        incoming: bool,
        length: int | None = None,
    ) -> None:
        """Copy until the reader ends, or until `length` bytes when it is given."""
        idle = self._limits.idle_seconds if incoming else None
        left = length
        while left is None or left > 0:
            data = await asyncio.wait_for(reader.read(min(_BLOCK, left or _BLOCK)), idle)
            if not data or (incoming and not self._within_budget(len(data))):
                return
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self._limits.idle_seconds)
            if left is not None:
                left -= len(data)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one answer and no byte past its Content-Length: a body that runs on past what
        it declared would otherwise fill the socket buffers towards a client that stopped
        reading (yt-dlp reads 512 bytes of a page it probes), and count against the budget."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._limits.idle_seconds)
        if not self._within_budget(len(head)):
            return
        writer.write(head)
        await asyncio.wait_for(writer.drain(), self._limits.idle_seconds)
        await self._pipe(reader, writer, incoming=True, length=_content_length(head))

    def _within_budget(self, size: int) -> bool:
        self._received += size
        max_bytes, what = self._budget
        if self._received > max_bytes:
            self._fail(Failure(Reason.TOO_LARGE, f"{what} passed {max_bytes} bytes"))
        return self._received <= max_bytes


def _content_length(head: bytes) -> int | None:
    """The body's declared length; None when it has none or is framed otherwise (chunked)."""
    fields = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line]
    found = {name.strip().lower(): value.strip() for name, value in fields}
    length = found.get(b"content-length")
    if b"transfer-encoding" in found or length is None or not length.isdigit():
        return None
    return int(length)


def _origin_request(method: str, parts: SplitResult, headers: list[str]) -> bytes:
    """The request as the destination expects it: origin-form target, one request only."""
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    if not any(h.lower().startswith("host:") for h in kept):
        kept.append(f"Host: {parts.netloc}")
    lines = [f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in message)  # one safe header line
    body = (text + "\n").encode()
    refused = f"{REFUSED_HEADER}: {text}\r\n" if status == 403 else ""
    head = (
        f"HTTP/1.1 {status} {_STATUS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{refused}\r\n"
    )
    with suppress(OSError):
        writer.write(head.encode() + body)
        await writer.drain()


@dataclass(frozen=True)
class RunningProxy:
    """An EgressProxy on an event loop in its own thread, for blocking callers such as yt-dlp."""

    _proxy: EgressProxy
    _loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._proxy.port}"

    @property
    def failure(self) -> Failure | None:
        return self._proxy.failure  # set once, on the proxy's thread; reading it is safe

    def start_download(self) -> None:
        # Queued before any request made after this call, so those count against the download.
        self._loop.call_soon_threadsafe(self._proxy.start_download)


@contextmanager
def running_proxy(policy: UrlPolicy, limits: Limits) -> Iterator[RunningProxy]:
    """A proxy listening for the duration of the block; closed, with its connections, after."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="egress-proxy", daemon=True)
    thread.start()
    proxy = EgressProxy(policy, limits)
    try:
        _run(proxy.start(), loop)
        yield RunningProxy(proxy, loop)
    finally:
        _run(proxy.close(), loop)
        _run(loop.shutdown_default_executor(), loop)  # the threads that ran the checks
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _run(work: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
    asyncio.run_coroutine_threadsafe(work, loop).result()

"""HTTP servers for the hostile-input tests, on loopback: a canary that must never be reached, and
a site on the one allowed address that redirects, links, streams and lies as a test asks.

Linux routes all of 127.0.0.0/8 to the loopback interface, so the site listens on 127.0.0.1
(allow-listed) and the canary on 127.0.0.2 (refused like any loopback address)."""

from __future__ import annotations

import html
import mimetypes
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

SITE_HOST = "127.0.0.1"
CANARY_HOST = "127.0.0.2"
# The canary's address in the spellings a URL or a hop may use.
CANARY_SPELLINGS = [
    "127.0.0.2",
    "127.0.0.2.",
    "2130706434",
    "0x7f000002",
    "0x7f.0.0.2",
    "0177.0.0.2",
    "017700000002",
    "127.2",
    "%31%32%37.0.0.2",
    "[::ffff:127.0.0.2]",
    "[::ffff:7f00:2]",
]
_BLOCK = b"\0" * 65536


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CanaryServer(ThreadingHTTPServer):
    connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1  # every accepted connection, whether or not a request follows
        return True


class _CanaryHandler(_Quiet):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"canary")


class _SiteHandler(_Quiet):
    """Routes: /redirect?to=URL[&code=N], /loop (redirects to itself), /page?media=URL,
    /refresh?to=URL (a meta refresh), /endless?type=T[&length=N][&pause=S] (zeros for ever,
    maybe with a Content-Length that lies), /short?length=N (declares N, sends 1000 bytes),
    /endless-page (HTML for ever), /playlist.m3u8?segment=URL (HLS that needs ffmpeg), and any
    file of the site's root by name."""

    root: Path

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        name = parts.path.strip("/")
        if name in _ROUTES:
            _ROUTES[name](self, query)
        else:
            self._file(name)

    def _redirect(self, query: dict[str, str]) -> None:
        self.send_response(int(query.get("code", "302")))
        self.send_header("Location", query["to"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _loop(self, query: dict[str, str]) -> None:
        self._redirect({"to": "/loop"})

    def _page(self, query: dict[str, str]) -> None:
        src = html.escape(query["media"])
        self._html(f'<html><body><audio controls src="{src}"></audio></body></html>')

    def _refresh(self, query: dict[str, str]) -> None:
        target = html.escape(query["to"])
        self._html(f'<html><head><meta http-equiv="refresh" content="0; url={target}"></head>')

    def _endless(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", query.get("type", "audio/mpeg"))
        if "length" in query:
            self.send_header("Content-Length", query["length"])
        self.end_headers()
        self._stream(_BLOCK, float(query.get("pause", "0")))

    def _endless_page(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self._stream(b"<p>" + b"a" * 1000 + b"</p>\n", 0)

    def _short(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", query["length"])
        self.end_headers()
        self.wfile.write(b"\xff" * 1000)
        self.close_connection = True

    def _playlist(self, query: dict[str, str]) -> None:
        """An HLS playlist with a feature only ffmpeg handles, and one segment."""
        body = (
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
            '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:text/plain;base64,AAAA"\n'
            f"#EXTINF:10.0,\n{query['segment']}\n#EXT-X-ENDLIST\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.apple.mpegurl")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _html(self, text: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, name: str) -> None:
        path = self.root / name
        if not name or "/" in name or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        kind, _ = mimetypes.guess_type(name)
        self.send_response(200)
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, block: bytes, pause: float) -> None:
        try:
            while True:
                self.wfile.write(block)
                time.sleep(pause)
        except OSError:
            pass  # the client gave up, as it should


_ROUTES = {
    "redirect": _SiteHandler._redirect,
    "loop": _SiteHandler._loop,
    "page": _SiteHandler._page,
    "refresh": _SiteHandler._refresh,
    "endless": _SiteHandler._endless,
    "endless-page": _SiteHandler._endless_page,
    "short": _SiteHandler._short,
    "playlist.m3u8": _SiteHandler._playlist,
}


class Canary:
    def __init__(self, server: _CanaryServer) -> None:
        self._server = server
        self.port = int(server.server_address[1])

    @property
    def connections(self) -> int:
        return self._server.connections

    def url(self, host: str = CANARY_HOST, path: str = "/talk.mp3", scheme: str = "http") -> str:
        """The canary's URL with its host spelt `host` (an IP in any form, or a name)."""
        return f"{scheme}://{host}:{self.port}{path}"


class Site:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.port = int(server.server_address[1])
        self.base = f"http://{SITE_HOST}:{self.port}"

    def url(self, route: str, **query: str) -> str:
        params = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return f"{self.base}/{route}" + (f"?{params}" if params else "")


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def canary() -> Iterator[Canary]:
    server = _CanaryServer((CANARY_HOST, 0), _CanaryHandler)
    with _serving(server):
        yield Canary(server)


@contextmanager
def site(root: Path) -> Iterator[Site]:
    handler = type("Handler", (_SiteHandler,), {"root": root})
    server = ThreadingHTTPServer((SITE_HOST, 0), handler)
    with _serving(server):
        yield Site(server)

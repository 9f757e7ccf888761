"""Every hop yt-dlp makes passes the egress proxy, which refuses what the policy refuses before
connecting, and connects only to the address it checked. The site on 127.0.0.1 is allowed; the
canary on 127.0.0.2 must see no connection at all, however a hop spells its address."""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.downloader import DownloadLimits, download
from streamscribe.ingest.egress import REFUSED_HEADER, Limits, RunningProxy, running_proxy
from streamscribe.ingest.urlguard import UrlPolicy
from tests import hostile_servers
from tests.hostile_servers import CANARY_SPELLINGS as HOSTILE_SPELLINGS
from tests.hostile_servers import SITE_HOST, Canary, Site

POLICY = UrlPolicy(allowed_hosts=frozenset({SITE_HOST}))
PROXY_LIMITS = Limits(
    probe_bytes=10_000_000, download_bytes=10_000_000, idle_seconds=5, deadline_seconds=60
)
DOWNLOAD_LIMITS = DownloadLimits(
    max_bytes=10_000_000,
    max_probe_bytes=10_000_000,
    max_duration_seconds=3600,
    max_seconds=60,
    socket_timeout_seconds=5,
)
FAKE_DNS = {
    "canary.example": ["127.0.0.2"],
    "both.example": ["127.0.0.1", "127.0.0.2"],  # one refused address is enough to refuse
    "v6loop.example": ["::1"],
}
REBINDING = "rebind.example"  # answers 127.0.0.1 first, the canary's address after that
# The canary's address as hops may spell it.
CANARY_SPELLINGS = [
    *HOSTILE_SPELLINGS,
    "[0:0:0:0:0:ffff:7f00:2]",
    "canary.example",
    "both.example",
]
# Addresses nothing here listens on: a connection attempt would hang or fail, not be refused.
UNREACHABLE = [
    "169.254.169.254",
    "10.0.0.1",
    "[::1]",
    "[fd00:ec2::254]",
    "0.0.0.0",
    "v6loop.example",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    with wave.open(str(root / "speech.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(32000))
    return root


@pytest.fixture(scope="module")
def site(root: Path) -> Iterator[Site]:
    with hostile_servers.site(root) as served:
        yield served


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with hostile_servers.canary() as served:
        yield served


@pytest.fixture(autouse=True)
def canary_untouched(canary: Canary) -> Iterator[None]:
    before = canary.connections
    yield
    assert canary.connections == before, "the canary was reached"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names in FAKE_DNS resolve to their addresses; returns every name looked up."""
    real = socket.getaddrinfo
    seen: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        seen.append(host)
        if host == REBINDING:
            return [_addrinfo("127.0.0.1" if seen.count(host) == 1 else "127.0.0.2")]
        if host not in FAKE_DNS:
            return real(host, *args, **kwargs)
        return [_addrinfo(a) for a in FAKE_DNS[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def _addrinfo(address: str) -> tuple[Any, ...]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockaddr = (address, 0, 0, 0) if ":" in address else (address, 0)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch, lookups: list[str]) -> list[tuple[str, int]]:
    """Every (host, port) the proxy opens a connection to."""
    real = asyncio.open_connection
    opened: list[tuple[str, int]] = []

    async def open_connection(host: str, port: int, **kwargs: Any) -> Any:
        opened.append((host, port))
        return await real(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    return opened


@pytest.fixture
def proxy(connections: list[tuple[str, int]]) -> Iterator[RunningProxy]:
    with running_proxy(POLICY, PROXY_LIMITS) as running:
        yield running


def ask(proxy: RunningProxy, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request to the proxy; return its status, headers and body."""
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while block := sock.recv(65536):
            data += block
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def assert_refused(proxy: RunningProxy, answer: tuple[int, dict[str, str], bytes]) -> str:
    status, headers, _ = answer
    assert status == 403
    assert proxy.failure is not None
    assert proxy.failure.reason is Reason.REFUSED_URL
    assert headers[REFUSED_HEADER] == proxy.failure.detail
    return proxy.failure.detail


def download_failure(url: str, job_dir: Path) -> MediaError:
    with pytest.raises(MediaError) as caught:
        download(url, job_dir, DOWNLOAD_LIMITS, POLICY)
    return caught.value


# The proxy on its own, spoken to directly.


def test_an_allowed_request_is_forwarded(proxy: RunningProxy, site: Site, root: Path) -> None:
    url = site.url("speech.wav")
    status, _, body = ask(proxy, f"GET {url} HTTP/1.1\r\nHost: {SITE_HOST}\r\n\r\n")
    assert status == 200
    assert body == (root / "speech.wav").read_bytes()
    assert proxy.failure is None


def test_an_answer_ends_at_its_declared_length(proxy: RunningProxy, site: Site) -> None:
    """The site's body runs on for ever past the 5000 bytes it declares: the proxy relays the
    declared bytes and ends the answer, so a client that stops reading costs nothing more."""
    url = site.url("endless", type="text/plain", length="5000")
    status, headers, body = ask(proxy, f"GET {url} HTTP/1.1\r\nHost: {SITE_HOST}\r\n\r\n")
    assert (status, headers["Content-Length"], len(body)) == (200, "5000", 5000)
    assert proxy.failure is None


def test_an_allowed_connect_is_tunnelled(proxy: RunningProxy, site: Site) -> None:
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT {SITE_HOST}:{site.port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /speech.wav HTTP/1.0\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.0 200")


@pytest.mark.parametrize("host", CANARY_SPELLINGS)
def test_every_spelling_of_a_refused_address_is_refused(
    proxy: RunningProxy, canary: Canary, host: str
) -> None:
    url = canary.url(host)
    detail = assert_refused(proxy, ask(proxy, f"GET {url} HTTP/1.1\r\n\r\n"))
    assert "loopback" in detail


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "[::ffff:127.0.0.2]"])
def test_connect_to_a_refused_address_is_refused(
    proxy: RunningProxy, canary: Canary, host: str
) -> None:
    detail = assert_refused(proxy, ask(proxy, f"CONNECT {host}:{canary.port} HTTP/1.1\r\n\r\n"))
    assert detail.startswith("CONNECT through the egress proxy: refused")


@pytest.mark.parametrize("host", UNREACHABLE)
@pytest.mark.parametrize("method", ["GET", "CONNECT"])
def test_refused_before_any_connection_is_attempted(
    proxy: RunningProxy, connections: list[tuple[str, int]], host: str, method: str
) -> None:
    target = f"http://{host}/latest/meta-data/" if method == "GET" else f"{host}:443"
    assert_refused(proxy, ask(proxy, f"{method} {target} HTTP/1.1\r\n\r\n"))
    assert connections == []


def test_credentials_in_the_uri_are_refused(proxy: RunningProxy, site: Site) -> None:
    url = f"http://user:secret@{SITE_HOST}:{site.port}/speech.wav"
    detail = assert_refused(proxy, ask(proxy, f"GET {url} HTTP/1.1\r\n\r\n"))
    assert "credentials" in detail
    assert "secret" not in detail


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "/speech.wav"])
def test_other_schemes_and_relative_targets_are_refused(proxy: RunningProxy, target: str) -> None:
    assert_refused(proxy, ask(proxy, f"GET {target} HTTP/1.1\r\n\r\n"))


def test_after_a_refusal_every_request_is_refused(
    proxy: RunningProxy, canary: Canary, site: Site
) -> None:
    first = assert_refused(proxy, ask(proxy, f"GET {canary.url()} HTTP/1.1\r\n\r\n"))
    again = ask(proxy, f"GET {site.url('speech.wav')} HTTP/1.1\r\n\r\n")
    assert assert_refused(proxy, again) == first


def test_a_name_is_resolved_once_and_its_checked_address_connected(
    proxy: RunningProxy,
    canary: Canary,
    lookups: list[str],
    connections: list[tuple[str, int]],
) -> None:
    """DNS rebinding: the first answer is allowed, later ones point at the canary. The proxy
    connects to the first (where nothing listens on the canary's port) and never asks again."""
    status, _, _ = ask(proxy, f"GET {canary.url(REBINDING)} HTTP/1.1\r\n\r\n")
    assert status == 502
    assert lookups.count(REBINDING) == 1
    assert connections == [("127.0.0.1", canary.port)]


# Through yt-dlp: redirects, pages and the media URLs found in them.


def test_an_allowed_download_passes(site: Site, tmp_path: Path, root: Path) -> None:
    path = download(site.url("speech.wav"), tmp_path, DOWNLOAD_LIMITS, POLICY)
    assert path.read_bytes() == (root / "speech.wav").read_bytes()


@pytest.mark.parametrize("host", CANARY_SPELLINGS)
def test_a_redirect_to_the_canary_is_refused(
    site: Site, canary: Canary, tmp_path: Path, lookups: list[str], host: str
) -> None:
    failure = download_failure(site.url("redirect", to=canary.url(host)), tmp_path)
    assert failure.reason is Reason.REFUSED_URL
    assert failure.detail.startswith("GET through the egress proxy: refused http://")


@pytest.mark.parametrize("code", ["301", "303", "307", "308"])
def test_every_kind_of_redirect_is_checked(
    site: Site, canary: Canary, tmp_path: Path, code: str
) -> None:
    failure = download_failure(site.url("redirect", to=canary.url(), code=code), tmp_path)
    assert failure.reason is Reason.REFUSED_URL


@pytest.mark.parametrize("host", UNREACHABLE)
def test_a_redirect_inside_is_refused_without_a_connection(
    site: Site, tmp_path: Path, connections: list[tuple[str, int]], host: str
) -> None:
    failure = download_failure(site.url("redirect", to=f"http://{host}/latest/"), tmp_path)
    assert failure.reason is Reason.REFUSED_URL
    assert connections == [(SITE_HOST, site.port)]


@pytest.mark.parametrize(
    "make_url",
    [
        lambda site, canary: site.url("page", media=canary.url()),
        lambda site, canary: site.url("page", media=canary.url("2130706434")),
        lambda site, canary: site.url("refresh", to=canary.url()),
        lambda site, canary: site.url("redirect", to=site.url("redirect", to=canary.url())),
        lambda site, canary: site.url("redirect", to=canary.url(scheme="https")),
        lambda site, canary: site.url("redirect", to="file:///etc/passwd"),
        lambda site, canary: site.url("redirect", to=f"ftp://{SITE_HOST}:{site.port}/x"),
        lambda site, canary: site.url("loop"),
        lambda site, canary: site.url(
            "redirect", to=f"http://user:pw@{SITE_HOST}:{site.port}/speech.wav"
        ),
    ],
    ids=[
        "page-media",
        "page-media-decimal",
        "meta-refresh",
        "redirect-chain",
        "https-redirect",
        "file-redirect",
        "ftp-redirect",
        "redirect-loop",
        "credentials-redirect",
    ],
)
def test_hostile_pages_and_redirects_are_refused(
    site: Site, canary: Canary, tmp_path: Path, make_url: Callable[[Site, Canary], str]
) -> None:
    failure = download_failure(make_url(site, canary), tmp_path)
    assert failure.reason is Reason.REFUSED_URL, failure

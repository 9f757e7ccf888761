"""The URL guard against hostile URLs; names resolve through a fake DNS, since there is no
internet here and tests must not depend on it."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.urlguard import UrlPolicy, check_address, check_url

FAKE_DNS = {
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "v6loop.example": ["::1"],
    "rebind.example": ["93.184.216.34", "10.0.0.1"],  # one bad address is enough to refuse
    "public.example": ["93.184.216.34", "2606:2800:220:1::"],
    "minio.internal": ["10.0.0.5"],
}

HOSTILE = [
    # loopback, every spelling resolvers accept
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/a.mp3",
    "http://127.255.255.254/",
    "http://127.1/",
    "http://127.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.0.0.1./",
    # IPv6 forms
    "http://[::1]/",
    "http://[0000:0000:0000:0000:0000:0000:0000:0001]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[::]/",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    # private, shared, unspecified, multicast, reserved
    "http://10.0.0.1/",
    "http://10.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://0.0.0.0/",
    "http://0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    # schemes
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "ftp://93.184.216.34/a.mp3",
    "data:audio/mpeg;base64,SUQzAwAAAAAA",
    "javascript:alert(1)",
    "gopher://93.184.216.34/",
    "//93.184.216.34/a.mp3",
    "93.184.216.34/a.mp3",
    # credentials, and authorities that parsers split differently
    "http://user:pass@93.184.216.34/",
    "http://user@93.184.216.34/",
    "http://@93.184.216.34/",
    "http://93.184.216.34\\@127.0.0.1/",
    "http://127.0.0.1\\.public.example/",
    # names
    "http://localhost/",
    "http://LOCALHOST./",
    "http://localhost:9092/",
    "http://%6c%6f%63%61%6c%68%6f%73%74/",
    "http://\u2460\u2461\u2466.0.0.1/",  # circled digits: IDNA maps them to 127.0.0.1
    "http://127.0.0.1.nip.io/",
    "http://metadata.example/",
    "http://v6loop.example/",
    "http://rebind.example/",
    # malformed or hostless
    "http:///a.mp3",
    "http://[::1/",
    "http://93.184.216.34:99999/",
    "http://%00/",
]

PUBLIC = [
    "http://93.184.216.34/a.mp3",
    "https://93.184.216.34:8443/a.mp3?x=1#t=10",
    "HTTPS://93.184.216.34/",
    "http://[2606:2800:220:1::]/x",
    "http://[::ffff:93.184.216.34]/",
    "http://[2002:5db8:d822::]/",
    "http://public.example/talk.mp3",
    "http://PUBLIC.example./talk.mp3",
]


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names in FAKE_DNS resolve to their addresses; other names go to the real resolver."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in FAKE_DNS:
            return real(host, *args, **kwargs)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (a, 0, 0, 0) if ":" in a else (a, 0),
            )
            for a in FAKE_DNS[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def refusal(url: str, policy: UrlPolicy | None = None) -> str:
    with pytest.raises(MediaError) as caught:
        check_url(url, policy or UrlPolicy())
    assert caught.value.reason is Reason.REFUSED_URL
    return caught.value.detail


def test_there_are_enough_hostile_urls() -> None:
    assert len(HOSTILE) >= 35


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_urls_are_refused(url: str) -> None:
    assert refusal(url).startswith("refused ")


@pytest.mark.parametrize("url", PUBLIC)
def test_public_urls_pass(url: str) -> None:
    check_url(url, UrlPolicy())


def test_message_says_what_and_why_and_how_to_allow() -> None:
    detail = refusal("http://127.0.0.1/")
    assert detail.startswith("refused http://127.0.0.1/: address 127.0.0.1 is loopback")
    assert "STREAMSCRIBE_INGEST__ALLOW_PRIVATE_NETWORKS=true" in detail


def test_message_names_the_address_behind_other_spellings() -> None:
    assert "address 127.0.0.1 (written 0x7f000001) is loopback" in refusal("http://0x7f000001/")
    assert "which is loopback" in refusal("http://[::ffff:7f00:1]/")
    assert "cloud metadata" in refusal("http://2852039166/")
    assert "shared address space" in refusal("http://100.64.0.1/")
    assert "is reserved" in refusal("http://240.0.0.1/")


def test_message_names_the_resolved_address() -> None:
    assert "host localhost resolves to 127.0.0.1, which is loopback" in refusal("http://localhost/")
    assert "10.0.0.1, which is private" in refusal("http://rebind.example/")


def test_message_hides_credentials() -> None:
    detail = refusal("http://alice:s3cret@93.184.216.34/a.mp3")
    assert "s3cret" not in detail
    assert "alice" not in detail
    assert "credentials" in detail


def test_message_explains_the_scheme() -> None:
    assert "only http and https" in refusal("file:///etc/passwd")


def test_unresolvable_host_is_refused() -> None:
    assert "cannot resolve host nothing.invalid" in refusal("http://nothing.invalid/a.mp3")


def test_private_networks_can_be_allowed() -> None:
    policy = UrlPolicy(allow_private_networks=True)
    for url in [
        "http://127.0.0.1:8000/a.mp3",
        "http://localhost/",
        "http://[::1]/",
        "http://10.1/",
    ]:
        check_url(url, policy)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "http:///x"]
)
def test_allowing_private_networks_still_refuses_schemes_and_credentials(url: str) -> None:
    refusal(url, UrlPolicy(allow_private_networks=True))


def test_allowed_host_is_exempt() -> None:
    policy = UrlPolicy(allowed_hosts=frozenset({"minio.internal"}))
    check_url("http://minio.internal:9000/bucket/a.mp3", policy)
    check_url("http://MINIO.internal./bucket/a.mp3", policy)
    refusal("http://10.0.0.5/", policy)
    refusal("http://localhost/", policy)
    refusal("file://minio.internal/a.mp3", policy)
    refusal("http://u:p@minio.internal/a.mp3", policy)


def test_allowed_address_matches_every_spelling_and_name() -> None:
    policy = UrlPolicy(allowed_hosts=frozenset({"127.0.0.1", "[::1]", "10.0.0.5"}))
    for url in [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://[::1]/",
        "http://minio.internal/",
    ]:
        check_url(url, policy)
    refusal("http://127.0.0.2/", policy)


@pytest.mark.parametrize("host", ["localhost", "127.1", "[::1]", "::1", "v6loop.example", ""])
def test_check_address_refuses(host: str) -> None:
    with pytest.raises(MediaError) as caught:
        check_address(host, UrlPolicy())
    assert caught.value.reason is Reason.REFUSED_URL
    assert caught.value.detail.startswith("refused host")


@pytest.mark.parametrize("host", ["93.184.216.34", "[2606:2800:220:1::]", "public.example"])
def test_check_address_passes_public_hosts(host: str) -> None:
    check_address(host, UrlPolicy())


def test_check_address_follows_the_policy() -> None:
    check_address("localhost", UrlPolicy(allow_private_networks=True))
    check_address("minio.internal", UrlPolicy(allowed_hosts=frozenset({"minio.internal"})))


def test_the_checked_addresses_are_returned_for_connecting_to() -> None:
    """Connecting to these, not to the name again, is what closes DNS rebinding."""
    addresses = check_url("http://public.example/talk.mp3", UrlPolicy())
    assert [str(a) for a in addresses] == ["93.184.216.34", "2606:2800:220:1::"]
    private = UrlPolicy(allow_private_networks=True)
    assert [str(a) for a in check_address("0x7f.1", private)] == ["127.0.0.1"]
    assert [str(a) for a in check_address("minio.internal", private)] == ["10.0.0.5"]

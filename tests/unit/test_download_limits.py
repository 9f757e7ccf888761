"""Caps hold on the bytes that arrive, not on what servers declare: endless bodies, bodies that
lie about their length, endless pages and trickles all end, each with its reason."""

from __future__ import annotations

import dataclasses
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.downloader import DownloadLimits, download
from streamscribe.ingest.urlguard import UrlPolicy
from tests import hostile_servers
from tests.hostile_servers import SITE_HOST, Site

POLICY = UrlPolicy(allowed_hosts=frozenset({SITE_HOST}))
LIMITS = DownloadLimits(
    max_bytes=2_000_000,
    max_probe_bytes=1_000_000,
    max_duration_seconds=3600,
    max_seconds=60,  # a job's deadline: far off, but for the test of it (a loaded machine)
    socket_timeout_seconds=5,
)
DEADLINE = dataclasses.replace(LIMITS, max_seconds=2)
# the probe relays an endless body until yt-dlp closes it: on a loaded machine that can pass
# the probe cap first; the download cap's test gives the probe room (the probe cap has its own)
ROOMY_PROBE = dataclasses.replace(LIMITS, max_probe_bytes=64_000_000)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    with wave.open(str(root / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(32000))
    with hostile_servers.site(root) as served:
        yield served


def failure(url: str, job_dir: Path, limits: DownloadLimits = LIMITS) -> MediaError:
    with pytest.raises(MediaError) as caught:
        download(url, job_dir, limits, POLICY)
    return caught.value


def test_an_endless_body_stops_at_the_byte_cap(site: Site, tmp_path: Path) -> None:
    started = time.monotonic()
    error = failure(site.url("endless"), tmp_path, ROOMY_PROBE)
    assert error.reason is Reason.TOO_LARGE
    assert error.detail == "the download passed 2000000 bytes"
    assert time.monotonic() - started < LIMITS.max_seconds


def test_an_endless_page_stops_at_the_probe_cap(site: Site, tmp_path: Path) -> None:
    error = failure(site.url("endless-page"), tmp_path)
    assert error.reason is Reason.TOO_LARGE
    assert "while probing passed 1000000 bytes" in error.detail


def test_a_trickle_stops_at_the_deadline(site: Site, tmp_path: Path) -> None:
    started = time.monotonic()
    error = failure(site.url("endless", pause="0.2"), tmp_path, DEADLINE)
    assert error.reason is Reason.TOO_LONG
    assert error.detail == "the download took longer than 2 s"
    assert time.monotonic() - started < DEADLINE.max_seconds + 10  # not the idle timeout's


def test_a_declared_size_over_the_cap_is_not_downloaded(site: Site, tmp_path: Path) -> None:
    assert failure(site.url("endless", length="900000000"), tmp_path).reason is Reason.TOO_LARGE


def test_a_small_declared_size_is_all_that_is_kept(site: Site, tmp_path: Path) -> None:
    """The body goes on past its Content-Length; only the declared bytes are read."""
    path = download(site.url("endless", length="5000"), tmp_path, LIMITS, POLICY)
    assert path.stat().st_size == 5000


def test_a_body_shorter_than_declared_fails(site: Site, tmp_path: Path) -> None:
    assert failure(site.url("short", length="100000"), tmp_path).reason is Reason.DOWNLOAD_ERROR


def test_a_stream_only_ffmpeg_could_fetch_is_not_handed_to_it(site: Site, tmp_path: Path) -> None:
    """ffmpeg would open this playlist's file:// segment from the local disk."""
    url = site.url("playlist.m3u8", segment="file:///etc/passwd")
    error = failure(url, tmp_path)
    assert error.reason is Reason.UNSUPPORTED_MEDIA
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["text/plain", "application/json; charset=utf-8", "image/png"])
def test_a_response_that_is_not_media_is_unsupported_with_its_type(
    site: Site, tmp_path: Path, kind: str
) -> None:
    """yt-dlp takes any response that is not HTML for "a direct video link"; the type the
    server gave says it is not one, before a byte of it is downloaded."""
    error = failure(site.url("endless", type=kind, length="5000"), tmp_path)
    assert error.reason is Reason.UNSUPPORTED_MEDIA
    assert f"served as {kind.split(';')[0]}, not as audio or video" in error.detail
    assert str(tmp_path) not in error.detail
    assert list(tmp_path.iterdir()) == []


def test_a_response_served_as_binary_is_downloaded(site: Site, tmp_path: Path) -> None:
    url = site.url("endless", type="application/octet-stream", length="5000")
    assert download(url, tmp_path, LIMITS, POLICY).stat().st_size == 5000

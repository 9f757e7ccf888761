"""The downloader: yt-dlp with options fixed in code, probing before downloading and enforcing
the byte cap while bytes arrive. Blocking; the service runs it off the event loop."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.utils import DownloadError

from streamscribe.common.errors import MediaError, TransientError
from streamscribe.common.events import Reason
from streamscribe.ingest.urlguard import UrlPolicy, check_url

log = logging.getLogger(__name__)

_TRANSIENT = re.compile(
    r"HTTP Error (5\d\d|429)|timed out|Connection (refused|reset)|Temporary failure|"
    r"Remote end closed|IncompleteRead",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"HTTP Error (404|410)", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"Unsupported URL|no video formats|Requested format is not available")


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int
    max_duration_seconds: float
    socket_timeout_seconds: float


class _OverLimitError(Exception):
    """Raised from the progress hook to stop a download that outgrew its cap."""


class _QuietLogger:
    def debug(self, msg: str) -> None:
        log.debug(msg)

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        log.info(msg)

    def error(self, msg: str) -> None:
        log.info(msg)


def download(url: str, job_dir: Path, limits: DownloadLimits, policy: UrlPolicy) -> Path:
    """Download the audio of `url` into `job_dir`; return the file."""
    with yt_dlp.YoutubeDL(_options(job_dir, limits)) as ydl:
        info = _probe(ydl, url)
        _check(info, limits, policy)
        try:
            ydl.process_ie_result(info, download=True)
        except _OverLimitError as exc:
            raise MediaError(Reason.TOO_LARGE, str(exc)) from exc
        except DownloadError as exc:
            raise _classify(exc) from exc
    return _downloaded_file(job_dir, url)


def _options(job_dir: Path, limits: DownloadLimits) -> dict[str, Any]:
    def enforce_cap(progress: dict[str, Any]) -> None:
        if (progress.get("downloaded_bytes") or 0) > limits.max_bytes:
            raise _OverLimitError(f"download passed {limits.max_bytes} bytes")

    return {
        "format": "bestaudio/best",  # audio-only when the site offers it
        "outtmpl": str(job_dir / "media.%(ext)s"),
        "paths": {"home": str(job_dir), "temp": str(job_dir)},
        "noplaylist": True,
        "playlist_items": "1",
        "max_filesize": limits.max_bytes,
        "socket_timeout": limits.socket_timeout_seconds,
        "retries": 2,
        "fragment_retries": 2,
        "cachedir": False,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": _QuietLogger(),
        "progress_hooks": [enforce_cap],
        "postprocessors": [],
        "overwrites": True,
        "writesubtitles": False,
        "writethumbnail": False,
    }


def _probe(ydl: yt_dlp.YoutubeDL, url: str) -> dict[str, Any]:
    """Metadata only; a playlist yields its first item."""
    try:
        info = ydl.extract_info(url, download=False)
    except DownloadError as exc:
        raise _classify(exc) from exc
    if info is None:
        raise MediaError(Reason.UNSUPPORTED_MEDIA, f"nothing to download at {url}")
    if info.get("_type") == "playlist":
        entries = [entry for entry in info.get("entries") or [] if entry]
        if not entries:
            raise MediaError(Reason.UNSUPPORTED_MEDIA, f"empty playlist at {url}")
        info = entries[0]
    return dict(info)


def _check(info: dict[str, Any], limits: DownloadLimits, policy: UrlPolicy) -> None:
    """Refuse from metadata what would be refused later anyway: live, too long, too big, and
    media URLs that point where the page's URL could not."""
    if info.get("is_live") or info.get("live_status") in {"is_live", "is_upcoming"}:
        raise MediaError(Reason.LIVE_STREAM, "live streams are not transcribed")
    duration = info.get("duration")
    if duration and duration > limits.max_duration_seconds:
        raise MediaError(
            Reason.TOO_LONG, f"media lasts {duration:.0f}s, over {limits.max_duration_seconds:.0f}s"
        )
    size = info.get("filesize") or info.get("filesize_approx")
    if size and size > limits.max_bytes:
        raise MediaError(Reason.TOO_LARGE, f"media is {size} bytes, over {limits.max_bytes}")
    for fmt in info.get("requested_formats") or [info]:
        if fmt.get("url"):
            check_url(str(fmt["url"]), policy)


def _classify(exc: DownloadError) -> Exception:
    message = str(exc)
    if _NOT_FOUND.search(message):
        return MediaError(Reason.NOT_FOUND, message)
    if _UNSUPPORTED.search(message):
        return MediaError(Reason.UNSUPPORTED_MEDIA, message)
    if _TRANSIENT.search(message):
        return TransientError(message)
    return MediaError(Reason.DOWNLOAD_ERROR, message)


def _downloaded_file(job_dir: Path, url: str) -> Path:
    files = [p for p in job_dir.iterdir() if p.is_file() and not p.name.endswith(".part")]
    if not files:
        # yt-dlp skips (without raising) a file whose declared size is over max_filesize
        raise MediaError(Reason.TOO_LARGE, f"nothing was downloaded from {url}: over the size cap?")
    return max(files, key=lambda p: p.stat().st_size)

"""The downloader: yt-dlp with options fixed in code, probing before downloading.

yt-dlp reaches the network only through the job's egress proxy (egress.py), which checks every
hop against the URL policy and enforces the byte and time caps on the bytes as they arrive,
whatever sizes were declared. yt-dlp never hands a download to ffmpeg, which has a network stack
of its own and opens `file://` segments listed in a remote HLS playlist. Blocking; the service
runs it off the event loop."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.networking import Request
from yt_dlp.networking.exceptions import HTTPError, RequestError
from yt_dlp.utils import DownloadError

from streamscribe.common.errors import MediaError, TransientError
from streamscribe.common.events import MediaMetadata, Reason
from streamscribe.ingest.captions import CaptionsMode, Cue, Track, choose_track, parse
from streamscribe.ingest.egress import Limits, RunningProxy, running_proxy
from streamscribe.ingest.metadata import from_probe
from streamscribe.ingest.urlguard import UrlPolicy, check_url

log = logging.getLogger(__name__)

_TRANSIENT = re.compile(
    r"HTTP Error (5\d\d|429)|Tunnel connection failed: 5\d\d|timed out|"
    r"Connection (refused|reset)|Temporary failure|Remote end closed|IncompleteRead",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"HTTP Error (404|410)", re.IGNORECASE)
# yt-dlp reports a redirect as an error only when it will not follow it: to another scheme
# (file:, data:, ...) or round in a loop. The proxy never sees such a hop. With `requests`
# installed, yt-dlp fetches through it, which names a hop to another scheme its own way.
_REDIRECT = re.compile(r"HTTP Error 30[12378]|No connection adapters were found", re.IGNORECASE)
_NEEDS_FFMPEG = re.compile(r"ffmpeg could not be found|ffmpeg is not installed", re.IGNORECASE)
_EMPTY = re.compile(r"Did not get any data blocks")
_UNSUPPORTED = re.compile(r"Unsupported URL|no video formats|Requested format is not available")
# What a server may call media. yt-dlp's generic extractor returns any response that is not
# HTML as "a direct video link", so a text file would reach the decoder and fail there.
_MEDIA_TYPES = re.compile(
    r"^(audio/|video/|application/(ogg|octet-stream|x-mpegurl|vnd\.apple\.mpegurl|dash\+xml|"
    r"mp4|x-matroska)|binary/octet-stream)",
    re.IGNORECASE,
)
# Protocols yt-dlp downloads itself, through the proxy: no rtmp, rtsp, mms or websockets.
_PROTOCOLS = "[protocol~='^(https?|m3u8(_native)?|http_dash_segments)$']"


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int  # the media
    max_probe_bytes: int  # pages and manifests, which yt-dlp holds in memory
    max_duration_seconds: float  # from metadata here; the decoder enforces it on the audio
    max_seconds: float  # wall clock of the whole job, probe included
    socket_timeout_seconds: float


@dataclass(frozen=True)
class CaptionChoice:
    """Whether and which captions replace the audio (see captions.py)."""

    mode: CaptionsMode
    language: str
    automatic: bool


@dataclass(frozen=True)
class Captions:
    """What the download found instead of audio: a caption track and its cleaned cues."""

    track: Track
    cues: list[Cue]


class _QuietLogger:
    def debug(self, msg: str) -> None:
        log.debug(msg)

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        log.info(msg)

    def error(self, msg: str) -> None:
        log.info(msg)


def download(
    url: str,
    job_dir: Path,
    limits: DownloadLimits,
    policy: UrlPolicy,
    captions: CaptionChoice | None = None,
    on_metadata: Callable[[MediaMetadata], None] | None = None,
) -> Path | Captions:
    """Download the audio of `url` into `job_dir` and return the file; or, when `captions`
    asks for them and the media has some, its captions instead (nothing else downloaded).
    `on_metadata` is given what the probe found (title, author...) before any download."""
    egress = Limits(
        probe_bytes=limits.max_probe_bytes,
        download_bytes=limits.max_bytes,
        idle_seconds=limits.socket_timeout_seconds,
        deadline_seconds=limits.max_seconds,
    )
    with running_proxy(policy, egress) as proxy:
        try:
            found = _fetch(url, job_dir, limits, policy, proxy, captions, on_metadata)
        except Exception as exc:
            _raise_stop(proxy, exc)
            raise
        _raise_stop(proxy, None)
    return found or _downloaded_file(job_dir, url)


def _fetch(
    url: str,
    job_dir: Path,
    limits: DownloadLimits,
    policy: UrlPolicy,
    proxy: RunningProxy,
    captions: CaptionChoice | None,
    on_metadata: Callable[[MediaMetadata], None] | None = None,
) -> Captions | None:
    with yt_dlp.YoutubeDL(_options(job_dir, limits, proxy.url)) as ydl:
        info = _probe(ydl, url)
        if on_metadata is not None:
            on_metadata(from_probe(info))
        _check(info, limits, policy)
        if captions is not None and captions.mode is not CaptionsMode.NEVER:
            found = _captions(ydl, info, captions, limits, policy)
            if found is not None:
                return found
            if captions.mode is CaptionsMode.ONLY:
                raise MediaError(Reason.NO_CAPTIONS, _no_captions(url, captions))
        _check_content_type(ydl, info)
        proxy.start_download()
        try:
            ydl.process_ie_result(info, download=True)
        except DownloadError as exc:
            raise _classify(exc) from exc
    return None


def _captions(
    ydl: yt_dlp.YoutubeDL,
    info: dict[str, Any],
    choice: CaptionChoice,
    limits: DownloadLimits,
    policy: UrlPolicy,
) -> Captions | None:
    """The media's captions in the wanted language, read through the proxy; None when it has
    none (or only an empty track)."""
    track = choose_track(info, choice.language, choice.automatic)
    if track is None:
        return None
    check_url(track.url, policy)
    try:
        with ydl.urlopen(Request(track.url)) as response:
            body = response.read(limits.max_probe_bytes + 1)
    except HTTPError as exc:
        if exc.status >= 500 or exc.status == 429:
            raise TransientError(f"cannot read the captions at {track.url}: {exc}") from exc
        log.info("captions at %s: %s; taken as none", track.url, exc)
        return None
    except RequestError as exc:
        raise TransientError(f"cannot read the captions at {track.url}: {exc}") from exc
    if len(body) > limits.max_probe_bytes:
        raise MediaError(Reason.TOO_LARGE, f"the captions passed {limits.max_probe_bytes} bytes")
    cues = parse(body.decode("utf-8", errors="replace"))
    return Captions(track, cues) if cues else None


def _no_captions(url: str, choice: CaptionChoice) -> str:
    detail = f"{url} has no captions in {choice.language!r} and captions are required"
    if not choice.automatic:
        detail += " (automatic captions are not used: STREAMSCRIBE_INGEST__AUTOMATIC_CAPTIONS)"
    return detail + "; STREAMSCRIBE_INGEST__CAPTIONS=prefer transcribes the audio instead"


def _raise_stop(proxy: RunningProxy, cause: Exception | None) -> None:
    """Raise why the proxy stopped the job, if it did: yt-dlp itself only saw an HTTP 403 or a
    dropped connection, or went on without what was refused."""
    if proxy.failure is not None:
        raise MediaError(proxy.failure.reason, proxy.failure.detail) from cause


def _options(job_dir: Path, limits: DownloadLimits, proxy_url: str) -> dict[str, Any]:
    return {
        "format": f"bestaudio{_PROTOCOLS}/best{_PROTOCOLS}",  # audio-only when the site offers it
        "outtmpl": str(job_dir / "media.%(ext)s"),
        "paths": {"home": str(job_dir), "temp": str(job_dir)},
        "noplaylist": True,
        "playlist_items": "1",
        "max_filesize": limits.max_bytes,  # skips a download whose declared size is over
        "proxy": proxy_url,
        "external_downloader": {"default": "native"},
        "ffmpeg_location": str(job_dir / "no-ffmpeg"),  # nothing there: ffmpeg never runs
        "socket_timeout": limits.socket_timeout_seconds,
        "retries": 2,
        "fragment_retries": 2,
        "cachedir": False,
        "noprogress": True,
        "quiet": True,
        "no_warnings": True,
        "logger": _QuietLogger(),
        "postprocessors": [],
        "overwrites": True,
        "writesubtitles": False,
        "writethumbnail": False,
    }


def _probe(ydl: yt_dlp.YoutubeDL, url: str) -> dict[str, Any]:
    """Metadata only; a playlist yields its first item."""
    try:
        info = ydl.extract_info(url, download=False)
    except (DownloadError, RequestError) as exc:  # RequestError: raised unwrapped via requests
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


def _check_content_type(ydl: yt_dlp.YoutubeDL, info: dict[str, Any]) -> None:
    """A "direct link" found by the generic extractor must be served as media: ask the server
    (through the proxy) what it is before downloading it. A GET whose body is left unread:
    servers answer HEAD less reliably than GET."""
    if not info.get("direct") or info.get("extractor_key") != "Generic" or not info.get("url"):
        return
    try:
        with ydl.urlopen(Request(str(info["url"]))) as response:
            seen = str(response.headers.get("Content-Type") or "").split(";")[0].strip()
    except (RequestError, OSError):
        return  # the download will meet (and report) the same error
    if seen and not _MEDIA_TYPES.match(seen):
        raise MediaError(
            Reason.UNSUPPORTED_MEDIA,
            f"{info['url']} is served as {seen}, not as audio or video: nothing to transcribe",
        )


def _classify(exc: DownloadError | RequestError) -> Exception:
    message = str(exc)
    if _NOT_FOUND.search(message):
        return MediaError(Reason.NOT_FOUND, message)
    if _REDIRECT.search(message):
        return MediaError(Reason.REFUSED_URL, f"a redirect that is not followed: {message}")
    if _EMPTY.search(message):
        return MediaError(Reason.DECODE_ERROR, f"the media is empty (no bytes came): {message}")
    if _NEEDS_FFMPEG.search(message):
        detail = "only ffmpeg could download this stream, and ingest never hands it remote input"
        return MediaError(Reason.UNSUPPORTED_MEDIA, f"{detail}: {message}")
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

"""What the page's templates show, worked out here so the templates stay plain: times as a
clock, the query's words marked in a passage, which player a media gets, failures in words.
Metadata (`title`, `author`, `published`, `duration`, `webpage_url`) is read where the records
carry it and left out where they do not: the media id and the source URL stand in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from streamscribe.common.errors import Reason
from streamscribe.embed.store.sqlite import STOPWORDS, WORD

VIDEO_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov", ".mkv", ".ogv")
AUDIO_SUFFIXES = (".mp3", ".m4a", ".aac", ".wav", ".ogg", ".oga", ".opus", ".flac", ".weba")
REASONS: dict[str, str] = {
    Reason.REFUSED_URL: "The address is not allowed here",
    Reason.NOT_FOUND: "Nothing was found at the address",
    Reason.UNSUPPORTED_MEDIA: "This is not media the pipeline can read",
    Reason.TOO_LARGE: "The media is larger than this server accepts",
    Reason.TOO_LONG: "The media is longer than this server accepts",
    Reason.LIVE_STREAM: "Live streams are not indexed",
    Reason.DOWNLOAD_ERROR: "The download failed",
    Reason.DECODE_ERROR: "The audio could not be decoded",
    Reason.NO_AUDIO: "The media has no audio",
    Reason.INVALID_EVENT: "The request was not valid",
    Reason.TRANSCRIBE_ERROR: "Transcribing failed",
    Reason.INDEX_ERROR: "Storing the transcript failed",
    Reason.INTERRUPTED: "The work was interrupted",
    Reason.NO_CAPTIONS: "The media has no captions to use",
    Reason.UNSUPPORTED_LANGUAGE: "The speech model cannot transcribe this language",
}
assert set(REASONS) == set(Reason)
STATES = {
    "requested": "Waiting to start",
    "transcribing": "Transcribing",
    "indexed": "Indexed",
    "failed": "Failed",
}


def clock(seconds: float | None) -> str:
    """`mm:ss`, or `h:mm:ss` past an hour."""
    whole = max(0, int(seconds or 0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def marked(text: str, query: str) -> list[tuple[str, bool]]:
    """`text` in pieces, each with whether it is a word of `query` (as search matches words:
    the same word, or one the other begins with; stop words only when nothing else is asked)."""
    asked = WORD.findall(query.lower())
    wanted = [word for word in asked if word not in STOPWORDS] or asked
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in WORD.finditer(text):
        if any(_same(match.group().lower(), word) for word in wanted):
            pieces += [(text[at : match.start()], False), (match.group(), True)]
            at = match.end()
    pieces.append((text[at:], False))
    return [piece for piece in pieces if piece[0]]


def _same(spoken: str, wanted: str) -> bool:
    shorter, longer = sorted((spoken, wanted), key=len)
    return spoken == wanted or (len(shorter) >= 4 and longer.startswith(shorter))


def title_of(record: Any) -> str:
    """The media's title, else its source URL's last part, else its id."""
    title = getattr(record, "title", None)
    if title:
        return str(title)
    url = getattr(record, "source_url", None) or ""
    tail = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if "://" in url else url
    return tail or str(record.media_id)


@dataclass(frozen=True)
class Player:
    """How a media plays: `audio`/`video` on its URL (with `#t=`), `site` (a link to its page
    at that second), or `none` (a local file: nothing the browser can fetch)."""

    kind: Literal["audio", "video", "site", "none"]
    url: str | None = None


def player_for(source_url: str | None, webpage_url: str | None, start: float) -> Player:
    source = source_url or ""
    path = urlsplit(source).path.lower()
    direct = path.endswith(VIDEO_SUFFIXES + AUDIO_SUFFIXES)
    if webpage_url and webpage_url != source and not direct:
        # a site's page (yt-dlp's webpage_url): its stream URL expires, its page does not
        return Player("site", at_second(webpage_url, start))
    if urlsplit(source).scheme not in ("http", "https"):
        return Player("none")
    kind: Literal["audio", "video"] = "video" if path.endswith(VIDEO_SUFFIXES) else "audio"
    return Player(kind, f"{source.split('#', 1)[0]}#t={start:g}")


def at_second(url: str, start: float) -> str:
    """`url` with `t=<seconds>`, the time parameter most sites read (YouTube, Vimeo, …)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "t"]
    query.append(("t", str(int(start))))
    return urlunsplit(parts._replace(query=urlencode(query)))


def failure_words(failure: Any) -> str | None:
    """A failure as a sentence: the reason in words, then the stage's own detail."""
    if failure is None:
        return None
    reason = REASONS.get(str(failure.reason), str(failure.reason))
    return f"{reason} ({failure.stage}): {failure.detail}"


def iso_duration(seconds: float) -> str:
    """An HTML `<time datetime>` duration."""
    return f"PT{max(0.0, seconds):.1f}S"


_SAFE_NEXT = re.compile(r"^/(?![/\\])[^\s]*$")


def safe_next(path: str | None) -> str:
    """Where to go after the key form: a path on this server, never another site."""
    return path if path and _SAFE_NEXT.match(path) else "/"

"""One root exception; the subclass says what `delivery` does with the message.

- InvalidEventError: the message cannot be understood: dead letter (or `media.failed` when it
  names a media).
- MediaError: this media can never succeed: terminal `media.failed` with its reason.
- TransientError: worth another try: bounded retries with backoff, then a dead letter.
- ConfigError: the operator must fix a setting; raised before any message is consumed.

`Reason` (the codes of `media.failed`) lives here, beside the error that carries it, so errors
and events need not import each other.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable reasons carried by `media.failed`."""

    REFUSED_URL = "refused_url"
    NOT_FOUND = "not_found"
    UNSUPPORTED_MEDIA = "unsupported_media"
    TOO_LARGE = "too_large"
    TOO_LONG = "too_long"
    LIVE_STREAM = "live_stream"
    DOWNLOAD_ERROR = "download_error"
    DECODE_ERROR = "decode_error"
    NO_AUDIO = "no_audio"
    INVALID_EVENT = "invalid_event"
    TRANSCRIBE_ERROR = "transcribe_error"
    INDEX_ERROR = "index_error"
    INTERRUPTED = "interrupted"
    NO_CAPTIONS = "no_captions"
    UNSUPPORTED_LANGUAGE = "unsupported_language"


class StreamscribeError(Exception):
    """Root of every error streamscribe raises on purpose."""


class ConfigError(StreamscribeError):
    """A setting or the environment is wrong; the message says how to fix it."""


class InvalidEventError(StreamscribeError):
    """A message that is not a valid event of its topic."""


class TransientError(StreamscribeError):
    """A failure that may pass: network, broker or store unavailable, HTTP 5xx/429."""


class MediaError(StreamscribeError):
    """A permanent failure of one media; `reason` is the code published in `media.failed`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

"""One root exception; the subclass says what `delivery` does with the message.

- InvalidEventError: the message cannot be understood: dead letter (or `media.failed` when it
  names a media).
- MediaError: this media can never succeed: terminal `media.failed` with its reason.
- TransientError: worth another try: bounded retries with backoff, then a dead letter.
- ConfigError: the operator must fix a setting; raised before any message is consumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamscribe.common.events import Reason


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

"""Which media (and chunk) a log line is about. `Delivery` sets it while a message is handled;
a filter on the service's log handler puts it in every line, including lines logged from worker
threads (`asyncio.to_thread` copies the context), so one grep for a media id finds its story."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FORMAT = "%(asctime)s %(levelname)s %(name)s%(about)s: %(message)s"
_ABOUT: ContextVar[str] = ContextVar("streamscribe_about", default="")


@contextmanager
def about(media_id: str, seq: int | None = None) -> Iterator[None]:
    """Log lines in this block (and the threads it starts) name `media_id` and `seq`."""
    label = media_id if seq is None else f"{media_id} seq={seq}"
    token = _ABOUT.set(f" [{label}]")
    try:
        yield
    finally:
        _ABOUT.reset(token)


class AboutFilter(logging.Filter):
    """Adds `about` to each record: ` [<media id> seq=<n>]`, or nothing outside a message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.about = _ABOUT.get()
        return True


def configure(level: str) -> None:
    """A service's logging: FORMAT on the root handler, with the media a line is about."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(AboutFilter())

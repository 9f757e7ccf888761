"""What the routes share: the API's own connection to the index (the consumer's is busy in its
own threads), the query embedder, the broker it publishes requests on, the key store. Routes
take it with `Depends(state)`; the service opens it before the app serves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from faststream.kafka import KafkaBroker

from streamscribe.api.errors import ApiError
from streamscribe.api.limits import RateLimit
from streamscribe.api.settings import ApiSettings
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.keys import ApiKeys

T = TypeVar("T")
NOT_OPEN = "the index is not open yet; try again once /readyz says ready"


@dataclass
class Opened:
    index: Index
    embedder: TextEmbedder
    broker: KafkaBroker
    keys: ApiKeys


@dataclass
class ApiState:
    settings: ApiSettings
    opened: Opened | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    limiter: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimit(self.settings.api.submit_per_minute)

    def open(self, opened: Opened) -> None:
        self.opened = opened

    def detach(self) -> None:
        """Stop serving (what was opened is closed by whoever opened it)."""
        self.opened = None

    def is_open(self) -> bool:
        return self.opened is not None

    @property
    def current(self) -> Opened:
        if self.opened is None:
            raise ApiError(503, NOT_OPEN, {"Retry-After": "5"})
        return self.opened

    async def read(self, work: Callable[[Index], T]) -> T:
        """`work` on the API's connection to the index, off the event loop, one at a time."""
        index = self.current.index
        async with self._lock:
            return await asyncio.to_thread(work, index)

    async def keys(self, work: Callable[[ApiKeys], T]) -> T:
        keys = self.current.keys
        async with self._lock:
            return await asyncio.to_thread(work, keys)

    async def embed(self, text: str) -> Any:
        return (await asyncio.to_thread(self.current.embedder.embed, [text]))[0]


def state(request: Request) -> ApiState:
    """The app's state, for `Depends`."""
    found: ApiState = request.app.state.api
    return found

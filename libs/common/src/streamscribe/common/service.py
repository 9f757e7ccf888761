"""The skeleton every service shares: a FastStream app with /metrics, /healthz and /readyz (and,
on the service that owns the data, the HTTP API), readiness that turns true only once resources
are loaded and the consumer has joined, and the memory guard running while the broker does."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import FrameType
from typing import Any, Protocol

from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.asgi.types import Receive, Scope, Send
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import make_asgi_app
from pydantic import BaseModel

from streamscribe.common import logcontext, metrics
from streamscribe.common.memory import MemoryGuard, resolve_marks
from streamscribe.common.settings import MemorySettings, ServiceSection

Lifespan = Callable[[], AbstractAsyncContextManager[None]]
"""Opens a service's resources before its consumers start; closes them after they stop."""


class Api(Protocol):
    """An ASGI app for the paths it `handles` (FastStream's own routes match whole paths only,
    and an API's paths carry ids)."""

    def handles(self, path: str) -> bool: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class ServiceApp(AsgiFastStream):
    """FastStream's ASGI app, with an optional `Api` in front of its routes."""

    api: Api | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api is not None and scope["type"] == "http" and self.api.handles(scope["path"]):
            await self.api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Readiness:
    """Flipped by the app once its model is loaded and its broker started."""

    def __init__(self) -> None:
        self.ready = False

    def set(self, ready: bool) -> None:
        self.ready = ready
        metrics.READY.set(1 if ready else 0)


def _readyz(readiness: Readiness) -> Any:
    @get(include_in_schema=False)
    async def readyz(scope: Scope) -> AsgiResponse:
        if readiness.ready:
            return AsgiResponse(b"ready\n", 200)
        return AsgiResponse(b"starting\n", 503)

    return readyz


def build_app(
    broker: KafkaBroker,
    lifespan: Lifespan,
    readiness: Readiness,
    memory: MemorySettings,
    api: Api | None = None,
    title: str = "streamscribe",
    publishes: Mapping[str, type[BaseModel]] | None = None,
) -> AsgiFastStream:
    """The FastStream app of one service: `lifespan` opens its resources before the broker
    starts (so the consumer joins only when it can work), and closes them after it stops.
    The memory guard runs from the broker's start (its consumers exist) until shutdown.
    `title` names the service in its AsyncAPI document; `publishes` (topic -> event model)
    puts the events it publishes there too (its handlers publish with `publish_event`)."""
    guard = MemoryGuard(broker, memory, resolve_marks(memory))
    for topic, model in (publishes or {}).items():
        broker.publisher(topic, schema=model, description=model.__doc__)

    async def mark_ready() -> None:
        await guard.start()
        readiness.set(True)

    async def mark_stopping() -> None:
        readiness.set(False)
        await guard.stop()

    def _lifespan(*_: Any, **__: Any) -> AbstractAsyncContextManager[None]:
        return lifespan()

    app = ServiceApp(
        broker,
        asgi_routes=[
            ("/metrics", make_asgi_app()),
            ("/healthz", make_ping_asgi(broker, timeout=5.0, include_in_schema=False)),
            ("/readyz", _readyz(readiness)),
        ],
        lifespan=_lifespan,
        after_startup=[mark_ready],
        on_shutdown=[mark_stopping],
        specification=AsyncAPI(title=title, version="1"),
    )
    app.api = api
    return app


def run(app: AsgiFastStream, section: ServiceSection, log_level: str) -> None:
    """Serve one service until SIGTERM/SIGINT."""
    logcontext.configure(log_level)
    level = logging.getLevelName(log_level)
    options: dict[str, str | int] = {
        "host": section.http_host,
        "port": free_port_or(section.http_host, section.http_port),
        "access_log": "false",
    }
    # uvicorn drains, then re-raises SIGTERM to the handler it found: make that a clean exit,
    # so supervisors see 0 for a requested stop and non-zero only for failures.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    asyncio.run(app.run(log_level=level, run_extra_options=dict(options)))


def free_port_or(host: str, port: int) -> int:
    """`port`, or any free port when another worker on this host holds it: a second worker of
    a stage beside `up` must start, not die with "address already in use"."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # as uvicorn binds: a port whose last connections linger in TIME_WAIT (a restarted
        # worker's) is free to listen on, only one that another process listens on is taken
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return port
        except OSError:
            sock.bind((host, 0))
            free = int(sock.getsockname()[1])
    logging.getLogger(__name__).warning(
        "port %d is taken: /metrics, /healthz and /readyz are on port %d", port, free
    )
    return free


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)

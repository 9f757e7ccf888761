"""The one app factory every service shares: a FastStream app with /metrics, /healthz and /readyz
(and, on the service that owns the data, the HTTP API), readiness that turns true only once
resources are loaded and the consumer has joined, and the memory guard running while the broker
does. A service supplies a `Service`: its subscribers (a router), its resources (put in
FastStream's context, where handlers take them), its readiness and what it publishes."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.specification import AsyncAPI
from prometheus_client import make_asgi_app
from pydantic import BaseModel

from streamscribe.common import logcontext, metrics
from streamscribe.common.kafka import ensure_topics, make_broker
from streamscribe.common.memory import MemoryGuard, resolve_marks
from streamscribe.common.settings import CommonSettings, ServiceSection

Resources = Callable[[KafkaBroker], AbstractAsyncContextManager[Mapping[str, object]]]
"""Opens a service's resources before its consumers start and yields them by name; the app puts
them in FastStream's context, where handlers take them (`Context(name)`). Closes them after the
consumers stop. It gets the broker for what publishes outside a handler (the HTTP API)."""


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Service:
    """What one service brings to the app."""

    name: str
    router: KafkaRouter
    """Its subscribers."""
    resources: Resources
    publishes: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    """Topic -> event model of what its handlers publish, for its AsyncAPI document."""
    api: ASGIApp | None = None
    """The HTTP API (an ASGI app) for every path FastStream's own routes do not answer."""
    ready: Callable[[], bool] = _always
    """Whether it can serve, asked by /readyz once its resources are open."""


class ServiceApp(AsgiFastStream):
    """FastStream's ASGI app (/metrics, /healthz, /readyz), with the HTTP API, if the process
    serves one, for every other path; without one, other paths answer a JSON 404."""

    api: ASGIApp | None = None

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api is not None and scope["type"] == "http":
            await self.api(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().not_found(scope, receive, send)
            return
        body = json.dumps({"error": f"no such path {scope['path']}; try /metrics"}).encode()
        await AsgiResponse(body, 404, {"content-type": "application/json"})(scope, receive, send)


class Readiness:
    """True once the app has started (every service's resources open, its broker started) and
    every service says it can serve."""

    def __init__(self, services: tuple[Service, ...]) -> None:
        self.started = False
        self.services = services
        metrics.READY.set_function(lambda: 1 if self.ready else 0)

    @property
    def ready(self) -> bool:
        return self.started and all(service.ready() for service in self.services)


def _readyz(readiness: Readiness) -> Any:
    @get(include_in_schema=False)
    async def readyz(scope: Scope) -> AsgiResponse:
        if readiness.ready:
            return AsgiResponse(b"ready\n", 200)
        return AsgiResponse(b"starting\n", 503)

    return readyz


def build_app(settings: CommonSettings, name: str, *services: Service) -> ServiceApp:
    """The FastStream app of one process running `services` (one stage, or every stage of one
    box), on one broker. Their resources are opened in order before the broker starts (so the
    consumers join only when they can work; a later service sizes its inputs from the memory
    left after an earlier one's model) and closed after it stops. The memory guard runs from
    the broker's start (its consumers exist) until shutdown. `name` names the process in its
    broker client id and its AsyncAPI document."""
    broker = make_broker(settings.kafka, name, settings.shutdown_grace_seconds)
    broker.insert_middleware(metrics.faststream_metrics(name))
    guard = MemoryGuard(broker, settings.memory, resolve_marks(settings.memory))
    readiness = Readiness(services)
    for service in services:
        broker.include_router(service.router)
        for topic, model in service.publishes.items():
            broker.publisher(topic, schema=model, description=model.__doc__)

    @asynccontextmanager
    async def lifespan(*_: Any, **__: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for service in services:
                await open_resources(stack, broker, service)
            await ensure_topics(settings.kafka, settings.topics)
            yield

    async def mark_ready() -> None:
        await guard.start()
        readiness.started = True

    async def mark_stopping() -> None:
        readiness.started = False
        await guard.stop()

    app = ServiceApp(
        broker,
        asgi_routes=[
            ("/metrics", make_asgi_app()),
            ("/healthz", make_ping_asgi(broker, timeout=5.0, include_in_schema=False)),
            ("/readyz", _readyz(readiness)),
        ],
        lifespan=lifespan,
        after_startup=[mark_ready],
        on_shutdown=[mark_stopping],
        specification=AsyncAPI(title=f"streamscribe {name}", version="1"),
    )
    app.api = next((service.api for service in services if service.api is not None), None)
    return app


async def open_resources(stack: AsyncExitStack, broker: KafkaBroker, service: Service) -> None:
    """Open `service`'s resources on `stack` and put them in the broker's context (taken out
    again before they close)."""
    opened = await stack.enter_async_context(service.resources(broker))
    for key, value in opened.items():
        broker.context.set_global(key, value)
        stack.callback(broker.context.reset_global, key)


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

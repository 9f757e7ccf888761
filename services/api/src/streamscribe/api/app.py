"""The API service: the FastAPI app (`create_api`) and what it brings to a FastStream app
(`service`): the query embedder, its own connection to the index, the key store, and the
callbacks subscriber. Today it runs in the embed worker's process (and in `up
--single-process`), on that process's port."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from streamscribe.api import dead_letters, errors, keys, media, page, search, transcriptions
from streamscribe.api.callbacks import Sender
from streamscribe.api.callbacks import router as callbacks_router
from streamscribe.api.settings import ApiSettings
from streamscribe.api.state import ApiState, Opened
from streamscribe.api.uploads import UploadLimit
from streamscribe.common.errors import ConfigError
from streamscribe.common.events import AudioChunk, MediaRequested
from streamscribe.common.memory import load_model
from streamscribe.common.service import Service
from streamscribe.common.tempfiles import TempRoot
from streamscribe.embed.embedder import shared_embedder
from streamscribe.embed.store.factory import open_index
from streamscribe.embed.store.keys import ApiKeys, open_keys
from streamscribe.embed.store.ledger import open_ledger

NAME = "api"
log = logging.getLogger(__name__)


def create_api(api: ApiState) -> FastAPI:
    """The HTTP API on `api` (opened by the service before it serves)."""
    app = FastAPI(
        title="streamscribe",
        version="1",
        summary="Media URLs in, a searchable timestamped transcript index out.",
        redoc_url=None,
        # every route may refuse a caller, a request or (for now) its work: all as ErrorBody
        responses={
            status: {"model": errors.ErrorBody, "description": meaning}
            for status, meaning in errors.EVERY_ROUTE.items()
        },
    )
    app.state.api = api
    errors.install(app)
    for module in (media, search, transcriptions, keys, dead_letters):
        app.include_router(module.router)
    page.install(app)  # the HTML page, outside the OpenAPI document
    app.add_middleware(
        UploadLimit, paths={"/v1/audio/transcriptions"}, most=api.settings.api.max_upload_bytes
    )
    return app


def openapi_document(settings: ApiSettings) -> dict[str, Any]:
    """The API's OpenAPI document (`make docs` writes it to docs/openapi.json)."""
    return create_api(ApiState(settings)).openapi()


def service(settings: ApiSettings) -> Service:
    api = ApiState(settings)

    @asynccontextmanager
    async def resources(broker: KafkaBroker) -> AsyncIterator[Mapping[str, object]]:
        async with AsyncExitStack() as stack:
            key_store = await asyncio.to_thread(open_keys, settings)
            stack.callback(key_store.close)
            check_exposure(settings, key_store)
            TempRoot(settings.temp_root, NAME).sweep()
            embedder = await load_model(lambda: shared_embedder(settings.embed, settings.data_dir))
            index = await asyncio.to_thread(open_index, settings, embedder.dimension)
            stack.callback(index.close)
            ledger = await asyncio.to_thread(open_ledger, settings)
            stack.callback(ledger.close)
            api.open(Opened(index, embedder, broker, key_store))
            stack.callback(api.detach)
            yield {"callbacks": Sender(settings, ledger)}

    publishes: dict[str, type[BaseModel]] = {
        settings.topics.requested: MediaRequested,
        settings.topics.audio: AudioChunk,
    }
    return Service(
        NAME, callbacks_router(settings), resources, publishes, create_api(api), api.is_open
    )


def check_exposure(settings: ApiSettings, key_store: ApiKeys) -> None:
    """Refuse to serve beyond loopback with no key to ask for; warn when checks are off."""
    host = settings.embed.http_host
    if settings.api.auth == "none":
        log.warning("API authentication is off (STREAMSCRIBE_API__AUTH=none): anyone who "
                    "reaches %s can submit media and read every transcript", host)  # fmt: skip
        return
    if _loopback(host) or settings.api.admin_key is not None or key_store.any_active():
        return
    raise ConfigError(
        f"the API would listen on {host} with no API key: set STREAMSCRIBE_API__ADMIN_KEY "
        "(then `streamscribe keys create` the others), bind to 127.0.0.1, or allow anyone "
        "with STREAMSCRIBE_API__AUTH=none"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

"""Callbacks: when a run ends (`media.indexed` or `media.failed`), its outcome is POSTed once to
the `callback_url` its submission gave, signed: `X-Streamscribe-Signature: sha256=<hex>`, the
HMAC-SHA256 of the body under `api.callback_secret`. Tried `api.callback_attempts` times with
doubling delays; the URL is checked by the URL guard again before every try, and redirects are
not followed (either could lead to a private address).

Once per outcome: each try claims the run's callback from the ledger (a lease as long as one
try) and a failed try releases it, and a delivered one is not claimed again, so a redelivered
outcome or a second API replica sends nothing more."""

# Handlers' annotations are objects, not strings (why: `common/consumer.py`).

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Annotated

import httpx
from faststream import Context
from faststream.kafka import KafkaRouter
from pydantic import SecretStr

from streamscribe.api.settings import ApiSettings
from streamscribe.common.consumer import Stage
from streamscribe.common.errors import MediaError
from streamscribe.common.events import Event, MediaFailed, MediaIndexed
from streamscribe.embed.store.ledger import Ledger
from streamscribe.ingest.urlguard import check_url, url_policy

SIGNATURE = "X-Streamscribe-Signature"
STAGE = "api"
LEASE_MARGIN_SECONDS = 0.05  # past a lease's end by this much, it is surely over
log = logging.getLogger(__name__)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def outcome_body(kind: str, event: Event) -> bytes:
    return json.dumps({"event": kind, **event.model_dump(mode="json")}).encode()


class Sender:
    """Delivers the outcome of runs that asked for a callback."""

    def __init__(self, settings: ApiSettings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger

    async def outcome(self, kind: str, event: MediaIndexed | MediaFailed) -> None:
        url = await self._claim(event) or await self._after_lease(event)
        if url is None:
            return
        section = self.settings.api
        if section.callback_secret is None:
            # any producer may set callback_url on media.requested; only POST /media vets it
            log.warning(
                "callback of %s not sent: no STREAMSCRIBE_API__CALLBACK_SECRET", event.media_id
            )
            await self._settle(self.ledger.callback_failed, event)
            return
        if not await self._deliver(url, kind, event, section.callback_secret):
            log.warning("callback of %s (run %s) given up", event.media_id, event.run)

    async def _deliver(
        self, url: str, kind: str, event: MediaIndexed | MediaFailed, secret: SecretStr
    ) -> bool:
        """False when every try failed; True once delivered, here or by another claimant."""
        section = self.settings.api
        body = outcome_body(kind, event)
        headers = self._headers(secret, kind, body)
        delay = section.callback_backoff_seconds
        async with httpx.AsyncClient(
            timeout=section.callback_timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            for attempt in range(1, section.callback_attempts + 1):
                if await self._try(client, url, body, headers, attempt):
                    await self._settle(self.ledger.callback_delivered, event)
                    return True
                # a claim's lease covers one try, not the backoff: released in between, so
                # tries that outlast the lease never overlap another claimant's
                await self._settle(self.ledger.callback_failed, event)
                if attempt == section.callback_attempts:
                    return False
                await asyncio.sleep(delay)
                delay *= 2
                claimed = await self._claim(event)
                if claimed is None:
                    return True  # delivered meanwhile, or another claimant's try is in flight
                url = claimed
        return False

    async def _after_lease(self, event: MediaIndexed | MediaFailed) -> str | None:
        """Another's claim holds the callback: wait out its lease once, then claim. Its claimer
        may have died mid-try, and this redelivered outcome is then the last one to send it."""
        left = await asyncio.to_thread(
            self.ledger.callback_lease_left, event.media_id, event.run or ""
        )
        if left is None:
            return None
        await asyncio.sleep(left + LEASE_MARGIN_SECONDS)
        return await self._claim(event)

    async def _claim(self, event: MediaIndexed | MediaFailed) -> str | None:
        return await asyncio.to_thread(self.ledger.claim_callback, event.media_id, event.run or "")

    async def _settle(
        self, mark: Callable[[str, str], None], event: MediaIndexed | MediaFailed
    ) -> None:
        await asyncio.to_thread(mark, event.media_id, event.run or "")

    def _headers(self, secret: SecretStr, kind: str, body: bytes) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Streamscribe-Event": kind,
            SIGNATURE: sign(secret.get_secret_value(), body),
        }

    async def _try(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], n: int
    ) -> bool:
        try:
            await asyncio.to_thread(check_url, url, url_policy(self.settings.ingest))
            response = await client.post(url, content=body, headers=headers)
        except MediaError as exc:
            log.warning("callback refused: %s", exc.detail)
            return False
        except httpx.HTTPError as exc:
            log.info("callback try %d to %s failed: %s", n, url, exc)
            return False
        if response.is_success:
            return True
        log.info("callback try %d answered %d", n, response.status_code)
        return False


Sending = Annotated[Sender, Context("callbacks")]


def router(settings: ApiSettings) -> KafkaRouter:
    """The API's subscribers: the outcomes whose runs asked for a callback."""
    stage = Stage(settings, STAGE)
    group = settings.topics.name("streamscribe-callbacks")

    async def on_indexed(event: MediaIndexed, sender: Sending) -> None:
        await sender.outcome("media.indexed", event)

    async def on_failed(event: MediaFailed, sender: Sending) -> None:
        await sender.outcome("media.failed", event)

    stage.follow(settings.topics.indexed, group, on_indexed)
    stage.follow(settings.topics.failed, group, on_failed)
    return stage.router

"""Callbacks (issue 21, acceptance 5): the API service's real router and resources on FastStream's
in-memory broker, a real SQLite ledger, and a real HTTP receiver on loopback that answers each
hook's first attempt 500. Each outcome is delivered exactly once, signed; a redelivered outcome
sends nothing more; a run without a callback sends nothing; `POST /media` refuses a callback URL
on a private address, and any callback while no signing secret is set.

In memory, a publish returns once the handlers it reached have run (the deliverer's retries
included), so "nothing more" is checked right after the publish: nothing is still in flight."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import SecretStr

from streamscribe.api import app as api_app
from streamscribe.api.callbacks import SIGNATURE, Sender
from streamscribe.api.settings import ApiSection, ApiSettings
from streamscribe.common.delivery import publish_event
from streamscribe.common.events import Event, MediaFailed, MediaIndexed, Reason, new_run
from streamscribe.common.settings import KafkaSettings, TopicSettings
from streamscribe.embed.store import ledger as ledger_module
from streamscribe.embed.store.ledger import Ledger, open_ledger
from streamscribe.ingest.settings import IngestSection
from tests.api_server import WordEmbedder, api_on
from tests.router_case import in_memory

SECRET = "a-signing-secret-for-tests"
WAIT = 10.0  # seconds: a bound for what takes milliseconds


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every attempt; answers a path's first attempt 500 and later ones 200."""

    attempts: list[str] = field(default_factory=list)
    accepted: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Event = field(default_factory=threading.Event)
    tried: threading.Event = field(default_factory=threading.Event)
    base: str = ""

    def take(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            first = path not in self.attempts
            self.attempts.append(path)
            self.tried.set()
            if first:
                return 500
            self.accepted.append(Delivery(path, headers, body))
        self.arrived.set()
        return 200

    def delivered(self, path: str) -> list[Delivery]:
        """The deliveries accepted on `path`, once at least one has arrived."""
        assert self.arrived.wait(WAIT), "no callback arrived"
        with self.lock:
            return [d for d in self.accepted if d.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = found.take(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)  # port 0: a free one
    found.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


@pytest.fixture
def settings(tmp_path: Path) -> ApiSettings:
    return ApiSettings(
        data_dir=tmp_path,
        temp_root=tmp_path / "tmp",
        kafka=KafkaSettings(),
        topics=TopicSettings(prefix=f"t-{uuid.uuid4().hex[:8]}."),
        api=ApiSection(
            callback_secret=SecretStr(SECRET), callback_backoff_seconds=0.01, callback_attempts=3
        ),
        ingest=IngestSection(allowed_hosts=["127.0.0.1"]),
    )


@dataclass
class Callbacks:
    broker: KafkaBroker
    settings: ApiSettings
    ledger: Ledger

    async def send(self, topic: str, event: MediaIndexed | MediaFailed) -> None:
        await publish_event(self.broker, topic, event, event.media_id.encode())


@pytest.fixture
async def callbacks(
    settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callbacks]:
    """The API service as its app opens it (the stand-in embedder: no model load), in memory;
    the test's own connection to the same ledger makes the requests."""
    monkeypatch.setattr(api_app, "shared_embedder", lambda *_: WordEmbedder())
    async with in_memory(api_app.service(settings), spied=[]) as running:
        ledger = open_ledger(settings)
        yield Callbacks(running.broker, settings, ledger)
        ledger.close()


def indexed(media_id: str, run: str) -> MediaIndexed:
    url = f"https://example.org/{media_id}.mp3"
    return MediaIndexed(media_id=media_id, source_url=url, chunk_count=2, passage_count=5, run=run)


def failed(media_id: str, run: str) -> MediaFailed:
    return MediaFailed(
        media_id=media_id, stage="ingest", reason=Reason.TOO_LONG, detail="over 4 h", run=run
    )


def check(delivery: Delivery, kind: str, event: Event) -> dict[str, Any]:
    """The delivery is signed with the secret and carries the event; returns its body."""
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery.headers[SIGNATURE], expected)
    assert delivery.headers["X-Streamscribe-Event"] == kind
    assert delivery.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(delivery.body)
    assert body["event"] == kind
    assert body == {"event": kind, **event.model_dump(mode="json")}
    return body


async def test_each_outcome_is_delivered_once_signed_after_a_500(
    callbacks: Callbacks, receiver: Receiver
) -> None:
    topics = callbacks.settings.topics
    run_a, run_b = new_run(), new_run()
    callbacks.ledger.request("m-a", run_a, "https://example.org/m-a.mp3", f"{receiver.base}/a")
    callbacks.ledger.request("m-b", run_b, "https://example.org/m-b.mp3", f"{receiver.base}/b")

    done = indexed("m-a", run_a)
    await callbacks.send(topics.indexed, done)
    [delivery] = receiver.delivered("/a")
    body = check(delivery, "media.indexed", done)
    assert (body["media_id"], body["run"]) == ("m-a", run_a)
    assert receiver.attempts == ["/a", "/a"]  # the 500, then the accepted retry

    await callbacks.send(topics.indexed, done)  # a redelivery of the same outcome
    assert receiver.attempts == ["/a", "/a"]

    refused = failed("m-b", run_b)
    await callbacks.send(topics.failed, refused)
    [delivery] = receiver.delivered("/b")
    body = check(delivery, "media.failed", refused)
    assert (body["media_id"], body["run"], body["reason"]) == ("m-b", run_b, "too_long")
    await callbacks.send(topics.failed, refused)
    assert receiver.attempts == ["/a", "/a", "/b", "/b"]
    assert len(receiver.accepted) == 2


async def test_a_run_without_a_callback_sends_nothing(
    callbacks: Callbacks, receiver: Receiver
) -> None:
    run = new_run()
    callbacks.ledger.request("m-c", run, "https://example.org/m-c.mp3")
    await callbacks.send(callbacks.settings.topics.indexed, indexed("m-c", run))
    await callbacks.send(callbacks.settings.topics.failed, failed("m-c", run))
    assert receiver.attempts == []


async def test_an_older_runs_outcome_sends_nothing(
    callbacks: Callbacks, receiver: Receiver
) -> None:
    """A re-submission without a callback replaces the run that had one."""
    old, new = "1700000000000-aaaa", "1700000000001-bbbb"  # runs sort by time
    callbacks.ledger.request("m-d", old, "https://example.org/m-d.mp3", f"{receiver.base}/d")
    callbacks.ledger.request("m-d", new, "https://example.org/m-d.mp3")
    await callbacks.send(callbacks.settings.topics.indexed, indexed("m-d", old))
    assert receiver.attempts == []


async def test_a_claimant_during_the_backoff_delivers_and_the_first_then_stops(
    callbacks: Callbacks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tries that outlast the claim's lease (here 0 s) while the outcome is redelivered
    elsewhere (a rebalance): still one delivery, since a failed try released its claim."""
    monkeypatch.setattr(ledger_module, "CALLBACK_LEASE_SECONDS", 0.0)
    settings = callbacks.settings
    slow = settings.api.model_copy(update={"callback_backoff_seconds": 0.5})
    run = new_run()
    callbacks.ledger.request("m-e", run, "https://example.org/m-e.mp3", f"{receiver.base}/e")
    first = Sender(settings.model_copy(update={"api": slow}), callbacks.ledger)
    trying = asyncio.create_task(first.outcome("media.indexed", indexed("m-e", run)))
    assert await asyncio.to_thread(receiver.tried.wait, WAIT)  # its first try got the 500
    await Sender(settings, callbacks.ledger).outcome("media.indexed", indexed("m-e", run))
    await asyncio.wait_for(trying, WAIT)
    assert receiver.attempts == ["/e", "/e"]
    assert len(receiver.delivered("/e")) == 1


async def test_a_claim_left_by_a_dead_claimant_is_taken_after_its_lease(
    callbacks: Callbacks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimer died mid-try; its outcome comes again (the offset was not committed) before
    the lease is over: waited out, then delivered, not committed unsent."""
    monkeypatch.setattr(ledger_module, "CALLBACK_LEASE_SECONDS", 0.3)
    run = new_run()
    callbacks.ledger.request("m-g", run, "https://example.org/m-g.mp3", f"{receiver.base}/g")
    assert callbacks.ledger.claim_callback("m-g", run) is not None  # the dead claimer's
    done = indexed("m-g", run)
    await callbacks.send(callbacks.settings.topics.indexed, done)
    [delivery] = receiver.delivered("/g")
    check(delivery, "media.indexed", done)
    assert callbacks.ledger.callback_lease_left("m-g", run) is None  # delivered: none held


async def test_a_producers_callback_is_not_sent_while_no_secret_is_set(
    settings: ApiSettings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any Kafka producer may put a callback_url on media.requested; unsigned, it is not sent."""
    unsigned = settings.model_copy(update={"api": ApiSection()})
    monkeypatch.setattr(api_app, "shared_embedder", lambda *_: WordEmbedder())
    run = new_run()
    ledger = open_ledger(unsigned)
    ledger.request("m-f", run, "https://example.org/m-f.mp3", f"{receiver.base}/f")
    async with in_memory(api_app.service(unsigned), spied=[]) as running:
        done = indexed("m-f", run)
        await publish_event(running.broker, unsigned.topics.indexed, done, b"m-f")
    assert receiver.attempts == []
    assert ledger.claim_callback("m-f", run) is not None  # not held: sent once a secret is set
    ledger.close()


@pytest.mark.parametrize(
    ("secret", "callback", "says"),
    [
        (SECRET, "http://10.1.2.3/hook", "private"),
        (SECRET, "http://169.254.169.254/latest", "metadata"),
        (SECRET, "file:///etc/passwd", "only http and https"),
        (None, "http://127.0.0.1:9/hook", "STREAMSCRIBE_API__CALLBACK_SECRET"),
    ],
)
async def test_post_media_refuses_a_callback_it_would_not_send(
    tmp_path: Path, secret: str | None, callback: str, says: str
) -> None:
    broker = KafkaBroker()
    published: list[Any] = []

    @broker.subscriber(TopicSettings().requested)
    async def requested(body: dict[str, Any]) -> None:
        published.append(body)

    api = api_on(tmp_path, broker, callback_secret=secret)
    try:
        async with TestKafkaBroker(broker):
            transport = httpx.ASGITransport(app=api.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                media = {"url": "http://127.0.0.1:9/a.mp3", "callback_url": callback}
                response = await http.post("/media", json=media)
                assert response.status_code == 422, response.text
                assert says in response.json()["error"]
                accepted = await http.post("/media", json={"url": "http://127.0.0.1:9/a.mp3"})
                assert accepted.status_code == 202  # the same media without the callback
        assert len(published) == 1
        assert api.index.ledger.recent()[0].callback_url is None
    finally:
        api.close()


async def test_post_media_records_an_accepted_callback(tmp_path: Path) -> None:
    broker = KafkaBroker()
    api = api_on(tmp_path, broker, callback_secret=SECRET)
    try:
        async with TestKafkaBroker(broker):
            transport = httpx.ASGITransport(app=api.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                media = {"url": "http://127.0.0.1:9/a.mp3", "callback_url": "http://127.0.0.1:9/h"}
                response = await http.post("/media", json=media)
        assert response.status_code == 202, response.text
        record = api.index.ledger.get(response.json()["media_id"])
        assert record is not None
        assert record.callback_url == "http://127.0.0.1:9/h"
        assert record.as_dict()["callback"] is True  # the URL itself is not shown
    finally:
        api.close()

"""One process for one box (`up --single-process`) on its own embedded broker: a kill -9 of the
whole process tree loses nothing submitted, and a restart when idle loses no status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.integration.conftest import (
    MediaServer,
    Pipeline,
    free_port,
    kill_tree,
    launch_up,
    start_pipeline,
    wait_for,
)
from tests.integration.speech import SENTENCES, Speech, make_speech

MiB = 2**20
DRAIN_MARK = 128 * MiB  # the recycle tests' broker: drained past it, recycled idle past 64 MiB

pytestmark = pytest.mark.integration


def _submit(pipeline: Pipeline, url: str) -> str:
    result = pipeline.cli("submit", url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _states(pipeline: Pipeline, ids: list[str]) -> dict[str, str]:
    return {media_id: (pipeline.status(media_id) or {}).get("state", "") for media_id in ids}


def test_kill_9_of_the_whole_box_then_up_again_ends_every_media_indexed(
    tmp_path: Path, media_server: MediaServer
) -> None:
    speeches = [make_speech(tmp_path, SENTENCES[i * 12 : i * 12 + 12], f"box{i}") for i in range(3)]
    for speech in speeches:
        (media_server.root / speech.path.name).write_bytes(speech.path.read_bytes())
    own_broker = f"127.0.0.1:{free_port()}"  # nobody listens: `up` starts Tansu there
    box = start_pipeline(own_broker, tmp_path / "data", 1, "--single-process")
    try:
        ids = [_submit(box, media_server.url(speech.path.name)) for speech in speeches]
        # accepted: the ledger knows all three (embed records a request as it reads it)
        in_flight = wait_for(lambda: "" not in _states(box, ids).values() and _states(box, ids),
                             60, "the ledger to know every media")  # fmt: skip
        assert set(in_flight.values()) & {"requested", "transcribing"}, in_flight
    finally:
        kill_tree(box.process.pid)

    box = launch_up(box.env, box.data_dir, ["--single-process"])
    try:
        for media_id in ids:
            status = box.wait_state(media_id, {"indexed", "failed"}, timeout=600)
            assert status["state"] == "indexed", status
        vectors = SQLiteVectors(box.data_dir / "streamscribe.db")
        counts = vectors.counts()
        assert counts["passages"] == counts["passages_fts"] == counts["passages_vec"] > 0
        for media_id in ids:
            status = box.status(media_id)
            assert status is not None
            assert status["chunks"]["stored"] == status["chunks"]["total"]
        before = {media_id: box.status(media_id) for media_id in ids}
        box.stop()  # idle now: a restart must lose no status
        box = launch_up(box.env, box.data_dir, ["--single-process"])
        assert {media_id: box.status(media_id) for media_id in ids} == before
    finally:
        box.stop()


async def _publish_junk(kafka: str, topic: str, megabytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka, max_request_size=2 * MiB)
    await producer.start()
    try:
        for _ in range(megabytes):
            await producer.send_and_wait(topic, os.urandom(MiB))
    finally:
        await producer.stop()


async def _publish(kafka: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def _dead_letters(pipeline: Pipeline) -> list[bytes]:
    listed = pipeline.cli("dlq", "list", "media.requested", "--json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    return [letter["body"].encode() for letter in json.loads(listed.stdout)]


def _broker(pipeline: Pipeline) -> psutil.Process:
    [broker] = [
        p
        for p in psutil.Process(pipeline.process.pid).children()
        if "tansu" in " ".join(p.cmdline())
    ]
    return broker


def test_a_grown_broker_is_drained_under_load_and_recycled_when_idle_losing_nothing(
    tmp_path: Path, media_server: MediaServer, short_speech: Speech
) -> None:
    """One box, both ways its broker is recycled. Under load: past the drain mark a media in
    flight finishes, one submitted meanwhile waits and is requested again on the new broker.
    Idle: past the recycle mark (below the drain mark) with nothing in flight, the broker
    restarts without draining, keeping every status and dead letter."""
    box = start_pipeline(
        f"127.0.0.1:{free_port()}", tmp_path / "data", 1, "--single-process",
        STREAMSCRIBE_EMBEDDED__RECYCLE_RSS_BYTES=str(64 * MiB),
        STREAMSCRIBE_EMBEDDED__DRAIN_RSS_BYTES=str(DRAIN_MARK),
        STREAMSCRIBE_EMBEDDED__IDLE_SECONDS="2",
        STREAMSCRIBE_EMBEDDED__DRAIN_IDLE_SECONDS="2",
        STREAMSCRIBE_EMBEDDED__CHECK_SECONDS="1",
    )  # fmt: skip
    said = _Said(box)
    try:
        _drained_under_load(box, said, media_server, short_speech)
        _recycled_when_idle(box, said, media_server, short_speech)
    finally:
        box.stop()


def _drained_under_load(
    box: Pipeline, said: _Said, media_server: MediaServer, short_speech: Speech
) -> None:
    with _slow_server(short_speech.path, seconds=30) as slow_url:
        busy = _submit(box, slow_url)  # its download keeps the pipeline busy: never idle
        asyncio.run(_publish_junk(box.bootstrap, box.topic("scratch"), 160))  # past the mark
        old_broker = _broker(box)
        said.wait("draining the embedded broker", 120)
        waiting = _submit(box, media_server.url(short_speech.path.name))
        # the run the ledger recorded as embed read the request (it was held back, not started)
        submitted_run = wait_for(lambda: box.status(waiting), 60, "the ledger to record it")["run"]
        said.wait("broker: recycled", 600)
        for media_id in (busy, waiting):
            status = box.wait_state(media_id, {"indexed", "failed"}, timeout=600)
            assert status["state"] == "indexed", status
    assert _broker(box).pid != old_broker.pid
    assert _broker(box).memory_info().rss < 64 * MiB
    # held back while draining, then requested again on the new broker as a new run
    assert box.status(waiting)["run"] > submitted_run  # type: ignore[index]


def _recycled_when_idle(
    box: Pipeline, said: _Said, media_server: MediaServer, short_speech: Speech
) -> None:
    indexed = box.cli("submit", media_server.url(short_speech.path.name) + "?idle=1", "--wait")
    assert indexed.returncode == 0, indexed.stderr
    media_id = indexed.stdout.strip()
    before = box.status(media_id)
    asyncio.run(_publish(box.bootstrap, box.topic("media.requested"), b"not json"))
    wait_for(lambda: _dead_letters(box), 60, "the invalid request's dead letter")
    recycles, drains = said.count("broker: recycled"), said.count("draining")
    asyncio.run(_publish_junk(box.bootstrap, box.topic("scratch"), 80))
    old_broker = _broker(box)
    # grown past the recycle mark (every byte kept in memory), not the drain mark
    assert 64 * MiB < old_broker.memory_info().rss < DRAIN_MARK
    said.wait("broker: recycled", 600, after=recycles)  # stop, restart, reload, rejoin: minutes
    assert said.count("draining") == drains  # idle: recycled without draining
    new_broker = _broker(box)
    assert new_broker.pid != old_broker.pid
    assert new_broker.memory_info().rss < 64 * MiB
    assert box.status(media_id) == before  # the ledger, not the broker, keeps outcomes
    assert _dead_letters(box) == [b"not json"]  # not replayed yet: carried over
    again = box.cli("submit", media_server.url(short_speech.path.name) + "?after=1", "--wait")
    assert again.returncode == 0, again.stderr  # the pipeline works on the new broker


@contextmanager
def _slow_server(path: Path, seconds: float) -> Iterator[str]:
    """Serves one file over loopback, spread over `seconds`: a download in flight that long."""
    body = path.read_bytes()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = max(1, len(body) // 60)
            with contextlib.suppress(OSError):
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    time.sleep(seconds / 60)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()


class _Said:
    """The lines `up` prints, read as they come."""

    def __init__(self, box: Pipeline) -> None:
        self.lines: list[str] = []
        self.queue: queue.Queue[str] = queue.Queue()
        stdout = box.process.stdout or ()
        threading.Thread(target=lambda: [self.queue.put(line) for line in stdout],
                         daemon=True).start()  # fmt: skip

    def count(self, text: str) -> int:
        """How many lines said so far hold `text`."""
        return sum(text in line for line in self.lines)

    def wait(self, text: str, timeout: float, after: int = 0) -> None:
        """Until `up` has said `text` once more than `after` times."""
        deadline = time.monotonic() + timeout
        while self.count(text) <= after:
            assert time.monotonic() < deadline, self.lines
            with contextlib.suppress(queue.Empty):
                self.lines.append(self.queue.get(timeout=1))

"""One real pipeline per session: `streamscribe up` on an embedded Tansu broker (its own free
port and topic prefix), real models, media served over HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamscribe.cli.broker import EmbeddedBroker
from streamscribe.cli.client import ApiClient, ApiError
from streamscribe.common.settings import ServiceSection, TopicSettings
from streamscribe.embed.model_files import resolve_model as resolve_embed_model
from streamscribe.embed.onnx_export import ensure_exported
from streamscribe.embed.settings import EmbedSection
from streamscribe.transcribe.settings import TranscribeSection
from streamscribe.transcribe.transcriber import Transcriber, resolve_model
from tests.conftest import SHARED_DATA_DIR, SHARED_ONNX_DIR, require_tool
from tests.integration.speech import SENTENCES, Speech, make_speech

READY_TIMEOUT = 300.0
STREAMSCRIBE = str(Path(sys.executable).with_name("streamscribe"))


@functools.cache
def model_env() -> dict[str, str]:
    """Settings that point a worker at the shared models: Whisper's int8 copy and the embed
    model's ONNX export, each written once here (under a lock, so pytest-xdist's workers may
    race) before any worker starts. A worker that wrote them at its first start would spend a
    test's time budget on it, and more on a fresh machine."""
    whisper = resolve_model(TranscribeSection(), SHARED_DATA_DIR)
    ensure_exported(resolve_embed_model(EmbedSection()), SHARED_ONNX_DIR)
    return {
        "STREAMSCRIBE_TRANSCRIBE__MODEL": whisper,
        "STREAMSCRIBE_EMBED__ONNX_DIR": str(SHARED_ONNX_DIR),
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`), the tests that use the session's pipeline all run on
    one worker (`--dist loadgroup`), so that one pipeline serves them."""
    for item in items:
        if "pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("pipeline"))


@pytest.fixture(scope="session", autouse=True)
def shared_models() -> dict[str, str]:
    """Prepares the shared models before the first integration test runs."""
    return model_env()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


async def eventually(
    predicate: Callable[[], object], timeout: float, what: str, every: float = 0.05
) -> None:
    """`wait_for` for a test on the event loop: awaits between checks, so the test's own
    consumers keep running. Raises AssertionError, not pytest's failure (a BaseException): it
    may run inside a FastStream handler, which must see an ordinary error."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None


def ready(port: int, timeout: float = 5) -> bool:
    """A worker's /readyz on `port` answers 200 (a predicate for `wait_for`)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def read_topic(kafka: str, topic: str) -> list[Any]:
    """Every record of a topic, now."""
    return asyncio.run(_read_async(kafka, topic))


async def _read_async(kafka: str, topic: str) -> list[Any]:
    """Every record of a topic, now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                records += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return records
    finally:
        await consumer.stop()


@dataclass
class Pipeline:
    env: dict[str, str]
    data_dir: Path
    temp_root: Path
    prefix: str
    bootstrap: str
    process: subprocess.Popen[str]

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STREAMSCRIBE, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    @property
    def api_url(self) -> str:
        port = self.env.get("STREAMSCRIBE_EMBED__HTTP_PORT")
        return self.env.get("STREAMSCRIBE_API_URL") or f"http://127.0.0.1:{port}"

    @property
    def api(self) -> ApiClient:
        """The HTTP API's client, where the CLI finds the API: `STREAMSCRIBE_API_URL`, else the
        embed service's port (every pipeline here sets one of them)."""
        return ApiClient(self.api_url, 30, key=self.env.get("STREAMSCRIBE_API_KEY"))

    def status(self, media_id: str) -> dict[str, Any] | None:
        """The ledger's record through the HTTP API (what `status --json` prints); None while
        the API does not know the media or does not answer (a restart)."""
        try:
            return self.api.media(media_id)
        except ApiError:
            return None

    def wait_state(self, media_id: str, states: set[str], timeout: float = 300) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(media_id)
            return status if status and status["state"] in states else None

        result: dict[str, Any] = wait_for(reached, timeout, f"{media_id} to reach {states}", 0.2)
        return result

    def topic(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def stop(self) -> None:
        """SIGTERM `up`, which stops its workers; it must exit in time."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(90)
        except subprocess.TimeoutExpired:
            kill_tree(self.process.pid)
            raise


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class MediaServer:
    root: Path
    base_url: str

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture(scope="session")
def transcriber(shared_models: dict[str, str]) -> Transcriber:
    """Whisper on the default settings, from the shared int8 copy: loaded once per session."""
    return Transcriber(TranscribeSection(model=shared_models["STREAMSCRIBE_TRANSCRIBE__MODEL"]))


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    require_tool("espeak-ng")
    require_tool("sox")
    return make_speech(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def short_speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    require_tool("espeak-ng")
    require_tool("sox")
    return make_speech(tmp_path_factory.mktemp("short"), SENTENCES[:2], "short")


@pytest.fixture(scope="session")
def media_server(
    tmp_path_factory: pytest.TempPathFactory, speech: Speech, short_speech: Speech
) -> Iterator[MediaServer]:
    """Serves the speech files and an HTML page with no media, on loopback."""
    root = tmp_path_factory.mktemp("www")
    for source in (speech.path, short_speech.path):
        (root / source.name).write_bytes(source.read_bytes())
    (root / "page.html").write_text("<html><body><p>No media here.</p></body></html>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield MediaServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The one embedded Tansu broker of the session; yields its bootstrap address.
    Tests isolate themselves with unique topics (a unique topic prefix per pipeline, which
    names its consumer groups apart too)."""
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port, tmp_path_factory.mktemp("tansu") / "tansu.log")
    asyncio.run(broker.start())
    yield f"127.0.0.1:{port}"
    asyncio.run(broker.stop())


def start_pipeline(
    kafka: str, data_dir: Path, replicas: int = 1, *flags: str, **extra: str
) -> Pipeline:
    """`streamscribe up` against `kafka` with its own topic prefix, data dir and ports. With
    `kafka` a free loopback port, `up` starts its own embedded broker there."""
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"it-{uuid.uuid4().hex[:8]}."
    ports = service_ports(replicas)
    admin_key = f"ss_test-{secrets.token_urlsafe(24)}"
    env = {
        **os.environ,
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "STREAMSCRIBE_TOPICS__PREFIX": prefix,
        "STREAMSCRIBE_TOPICS__PARTITIONS": "3",
        "STREAMSCRIBE_DATA_DIR": str(data_dir),
        "STREAMSCRIBE_TEMP_ROOT": str(data_dir / "tmp"),
        # Everything here is on loopback: ingest may fetch from 127.0.0.1 only, as a production
        # ingest may fetch from its allow-listed hosts only (test_hostile_input's canary is
        # on 127.0.0.2).
        "STREAMSCRIBE_INGEST__ALLOWED_HOSTS": '["127.0.0.1"]',
        "STREAMSCRIBE_RETRY__BACKOFF_SECONDS": "0.2",
        "STREAMSCRIBE_RETRY__MAX_ATTEMPTS": "2",
        # the API as deployed: keys required (the settings' admin key, which the CLI sends)
        "STREAMSCRIBE_API__ADMIN_KEY": admin_key,
        "STREAMSCRIBE_API_KEY": admin_key,
        "STREAMSCRIBE_API__CALLBACK_SECRET": secrets.token_hex(16),
        **model_env(),
        **{f"STREAMSCRIBE_{name}__HTTP_PORT": str(port) for name, port in ports.items()},
        **extra,
    }
    return launch_up(env, data_dir, ["--replicas", str(replicas), *flags])


def default_group(prefix: str, service: str) -> str:
    """The consumer group `service`'s workers join by default under the topic `prefix`."""
    return ServiceSection().group(service, TopicSettings(prefix=prefix))


def launch_up(env: dict[str, str], data_dir: Path, args: list[str]) -> Pipeline:
    """Run `up` with `env` and wait until it says ready (again, for a restart)."""
    with (data_dir / "up.log").open("a") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            # `up` gives up first, so a failure names the service that was not ready
            [STREAMSCRIBE, "up", "--ready-timeout", str(READY_TIMEOUT - 30), *args],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    lines: list[str] = []

    def read_until_ready() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "streamscribe ready" in line:
                return

    reader = threading.Thread(target=read_until_ready, daemon=True)
    reader.start()
    reader.join(READY_TIMEOUT)
    if not any("streamscribe ready" in line for line in lines):
        kill_tree(process.pid)
        pytest.fail(f"pipeline not ready: {''.join(lines)}\n{(data_dir / 'up.log').read_text()}")
    prefix, kafka = env["STREAMSCRIBE_TOPICS__PREFIX"], env["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"]
    return Pipeline(env, data_dir, data_dir / "tmp", prefix, kafka, process)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it (an `up`: its workers, its broker)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for process in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs([root], timeout=30)


def service_ports(replicas: int) -> dict[str, int]:
    """A first HTTP port per service; replicas step by 10 from it (as `up` counts), so all must
    be free and apart."""
    while True:
        ports = {name: free_port() for name in ("INGEST", "TRANSCRIBE", "EMBED")}
        taken = [p + 10 * i for p in ports.values() for i in range(replicas)]
        if len(set(taken)) == len(taken) and all(port_is_free(p) for p in taken):
            return ports


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka: str) -> Iterator[Pipeline]:
    """The session's pipeline: one worker per service on the session broker."""
    # Media longer than 5 minutes fail: test_hostile_input's decompression bomb stays cheap.
    running = start_pipeline(
        kafka, tmp_path_factory.mktemp("data"), STREAMSCRIBE_INGEST__MAX_DURATION_SECONDS="300"
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def kcat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kcat linked against the librdkafka bundled with confluent-kafka: Debian's 2.0.2 cannot
    parse the ApiVersions v3 response of the Tansu broker. The link lives in this session's own
    temp dir: two checkouts' suites never share it."""
    require_tool("kcat")
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    [library] = libs.glob("librdkafka*.so*")
    shim = tmp_path_factory.mktemp("kcat")
    (shim / "librdkafka.so.1").symlink_to(library)
    return {**os.environ, "LD_LIBRARY_PATH": str(shim)}

"""The service images under real limits: ingest, transcribe and embed each in its own container
with `--memory 512m`, on the host network, against the embedded broker started here, index
real speech; each worker's /metrics shows the container's limit as its memory ceiling; a
container whose limit cannot hold its model and one input stops at start with the error the
README promises, not by the kernel's OOM killer. The HTTP API (in embed, and in the one box)
runs with an admin key, as compose and Kubernetes run it: the CLI inside sends it, the probes
and /metrics need none; on a public address without a key the image refuses to start.

Needs `make images` first and an engine `docker` reaches (DOCKER_HOST). Without one, CI fails
and a local run skips."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import STREAMSCRIBE, free_port, wait_for
from tests.integration.speech import Speech, words

LIMIT = 512 * 2**20
SERVICES = ("ingest", "transcribe", "embed")
START_TIMEOUT = 300.0
INDEX_TIMEOUT = 900.0
CEILING_ERROR = "raise STREAMSCRIBE_MEMORY__CEILING_BYTES (or the container's memory limit)"
# the API's key, as a deployment's secret gives it: to the API, and to the CLI beside it
ADMIN_KEY = uuid.uuid4().hex + uuid.uuid4().hex
API_KEY_ENV = {"STREAMSCRIBE_API__ADMIN_KEY": ADMIN_KEY, "STREAMSCRIBE_API_KEY": ADMIN_KEY}


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker")
    assert binary
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def engine() -> None:
    """A container engine that answers, with the images built."""
    if shutil.which("docker") is None or docker("info", timeout=30).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("no container engine answers: start dockerd, set DOCKER_HOST")
        pytest.skip("no container engine answers")
    for image in ("streamscribe", *(f"streamscribe-{service}" for service in SERVICES)):
        assert docker("image", "inspect", image).returncode == 0, (
            f"no image {image}: run `make images` first"
        )


@dataclass
class Containers:
    """The containers a test started; all removed at its end."""

    prefix: str
    names: list[str] = field(default_factory=list)

    def run(self, service: str, memory: str, env: dict[str, str]) -> str:
        """Start `service`'s image (`onebox`: the one-box image, `streamscribe`)."""
        image = "streamscribe" if service == "onebox" else f"streamscribe-{service}"
        name = f"{self.prefix}-{service}-{len(self.names)}"
        options = [f"--env={key}={value}" for key, value in env.items()]
        result = docker(
            "run", "--detach", f"--name={name}", "--network=host",
            f"--memory={memory}", f"--memory-swap={memory}",  # no swap: the limit is the limit
            *options, image,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.names.append(name)
        return name

    def state(self, name: str) -> dict[str, Any]:
        result = docker("inspect", name)
        assert result.returncode == 0, result.stderr
        [info] = json.loads(result.stdout)
        return dict(info)

    def logs(self, name: str) -> str:
        result = docker("logs", name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        for name in self.names:
            docker("rm", "--force", "--volumes", name)


@pytest.fixture
def containers(engine: None) -> Iterator[Containers]:
    started = Containers(f"ss-test-{uuid.uuid4().hex[:8]}")
    try:
        yield started
    finally:
        started.remove()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_url(speech: Speech) -> Iterator[str]:
    """The speech, served over HTTP on the host's loopback (the containers share it)."""
    handler = functools.partial(_Quiet, directory=str(speech.path.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{speech.path.name}"
    server.shutdown()


def worker_env(kafka: str, prefix: str, service: str, port: int) -> dict[str, str]:
    return {
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "STREAMSCRIBE_TOPICS__PREFIX": prefix,
        "STREAMSCRIBE_TOPICS__PARTITIONS": "3",
        "STREAMSCRIBE_INGEST__ALLOWED_HOSTS": '["127.0.0.1"]',  # the media server here
        f"STREAMSCRIBE_{service.upper()}__HTTP_HOST": "127.0.0.1",
        f"STREAMSCRIBE_{service.upper()}__HTTP_PORT": str(port),
    } | (API_KEY_ENV if service == "embed" else {})


def get(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def status_code(port: int, path: str, key: str | None) -> int:
    """The HTTP status of GET `path`, with `key` as the bearer token when given."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def assert_keys_guard_the_api(port: int) -> None:
    """The API's routes want the key (from loopback too, once one exists); FastStream's own
    /metrics, /healthz and /readyz, which probes and Prometheus call, do not."""
    assert status_code(port, "/search?q=budget", None) == 401
    assert status_code(port, "/search?q=budget", "not-the-key") == 401
    assert status_code(port, "/search?q=budget", ADMIN_KEY) == 200
    for path in ("/metrics", "/healthz", "/readyz"):
        assert 200 <= status_code(port, path, None) < 300, path  # /healthz: 204


def gauge(port: int, name: str) -> float:
    text = get(port, "/metrics")
    assert text is not None
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"no {name} on :{port}")


def test_the_service_images_index_speech_each_in_512_mib(
    containers: Containers, kafka: str, media_url: str, speech: Speech, tmp_path: Path
) -> None:
    prefix = f"img-{uuid.uuid4().hex[:8]}."
    ports = {service: free_port() for service in SERVICES}
    names = {
        service: containers.run(service, "512m", worker_env(kafka, prefix, service, port))
        for service, port in ports.items()
    }

    def all_ready() -> bool:
        for service, name in names.items():
            if not containers.state(name)["State"]["Running"]:
                pytest.fail(f"{service} stopped:\n{containers.logs(name)}")
        return all(get(port, "/readyz") is not None for port in ports.values())

    wait_for(all_ready, START_TIMEOUT, "the three containers to be ready", 2)
    for service, port in ports.items():
        # the worker found the container's cgroup limit and took it as its ceiling
        assert containers.state(names[service])["HostConfig"]["Memory"] == LIMIT
        assert gauge(port, "streamscribe_memory_ceiling_bytes") == LIMIT, service
    assert_keys_guard_the_api(ports["embed"])

    # submitted from the host: no ledger here (an empty data dir), the containers do the rest
    env = {
        **os.environ,
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "STREAMSCRIBE_TOPICS__PREFIX": prefix,
        "STREAMSCRIBE_DATA_DIR": str(tmp_path),
    }
    submitted = subprocess.run(
        [STREAMSCRIBE, "submit", media_url], env=env, capture_output=True, text=True, timeout=120
    )
    assert submitted.returncode == 0, submitted.stderr
    media_id = submitted.stdout.strip().splitlines()[-1]

    def in_embed(*args: str) -> Any:  # the CLI sends the container's STREAMSCRIBE_API_KEY
        result = docker("exec", names["embed"], "streamscribe", *args, "--json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def indexed() -> dict[str, Any] | None:
        status = in_embed("status", media_id)
        if status and status["state"] == "failed":
            pytest.fail(f"failed: {status}")
        return status if status and status["state"] == "indexed" else None

    status = wait_for(indexed, INDEX_TIMEOUT, f"{media_id} to be indexed", 5)
    assert status["chunks"]["stored"] == status["chunks"]["total"] >= 6
    sentence, spoken_at = speech.sentence_at(len(speech.starts) // 2)
    hits = [hit for hit in in_embed("search", sentence) if hit["media_id"] == media_id]
    said, heard = set(words(sentence).split()), set(words(hits[0]["text"]).split())
    assert len(said & heard) >= 0.8 * len(said), (sentence, hits[0])  # Whisper: "neighbour"
    assert abs(hits[0]["start"] - spoken_at) <= 3.0
    for service, name in names.items():
        state = containers.state(name)["State"]
        assert state["Running"], (service, state)
        assert not state["OOMKilled"], (service, state)
        assert gauge(ports[service], "streamscribe_peak_resident_memory_bytes") < LIMIT


def test_a_limit_too_small_for_the_model_stops_the_worker_at_start(
    containers: Containers, kafka: str
) -> None:
    """Transcribe in 256 MiB: its model loads, but the model and one inference do not fit under
    the pause mark. The worker says so and exits; the kernel kills nothing."""
    prefix = f"img-{uuid.uuid4().hex[:8]}."
    env = worker_env(kafka, prefix, "transcribe", free_port())
    name = containers.run("transcribe", "256m", env)
    wait = docker("wait", name, timeout=START_TIMEOUT)
    assert wait.returncode == 0, wait.stderr
    state = containers.state(name)["State"]
    logs = containers.logs(name)
    assert state["ExitCode"] not in (0, 137), logs  # 137: SIGKILL, what an OOM kill looks like
    assert not state["OOMKilled"], logs
    assert "the memory budget of" in logs
    assert CEILING_ERROR in logs


def test_the_embed_image_refuses_a_public_address_without_an_api_key(
    containers: Containers, kafka: str
) -> None:
    """The image's own bind (0.0.0.0) with no admin key: the worker exits saying what to set,
    before it serves anything."""
    prefix = f"img-{uuid.uuid4().hex[:8]}."
    env = worker_env(kafka, prefix, "embed", free_port())
    for name in (*API_KEY_ENV, "STREAMSCRIBE_EMBED__HTTP_HOST"):
        del env[name]
    name = containers.run("embed", "512m", env)
    wait = docker("wait", name, timeout=START_TIMEOUT)
    assert wait.returncode == 0, wait.stderr
    state = containers.state(name)["State"]
    logs = containers.logs(name)
    assert state["ExitCode"] != 0, logs
    assert "with no API key: set STREAMSCRIBE_API__ADMIN_KEY" in logs, logs


def test_the_one_box_image_indexes_speech_in_512_mib(
    containers: Containers, media_url: str
) -> None:
    """`up --single-process` with its own embedded broker (on a free port: the host network is
    shared), the CLI inside the container submitting and waiting."""
    port = free_port()
    env = {
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STREAMSCRIBE_INGEST__ALLOWED_HOSTS": '["127.0.0.1"]',
        "STREAMSCRIBE_EMBED__HTTP_HOST": "127.0.0.1",
        "STREAMSCRIBE_EMBED__HTTP_PORT": str(port),
        **API_KEY_ENV,
    }
    name = containers.run("onebox", "512m", env)

    def ready() -> bool:
        if not containers.state(name)["State"]["Running"]:
            pytest.fail(f"the box stopped:\n{containers.logs(name)}")
        return get(port, "/readyz") is not None

    wait_for(ready, START_TIMEOUT, "the box to be ready", 2)
    assert gauge(port, "streamscribe_memory_ceiling_bytes") == LIMIT
    assert_keys_guard_the_api(port)
    wait = ("--wait", "--timeout", str(INDEX_TIMEOUT))  # through the API, with the key
    submitted = docker(
        "exec", name, "streamscribe", "submit", media_url, *wait, timeout=INDEX_TIMEOUT + 60
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr + containers.logs(name)
    assert "indexed" in submitted.stderr
    state = containers.state(name)["State"]
    assert state["Running"], state
    assert not state["OOMKilled"], state

"""More transcribe workers share one media: `up --replicas 2` on the default port layout, and two
`streamscribe worker transcribe` started beside it on the same host (their metrics port is
taken: each takes a free one and says so). Every transcribe worker handles chunks of the one
media, as its own /metrics shows."""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streamscribe.cli.supervisor import REPLICA_PORT_STEP
from streamscribe.common.settings import TopicSettings
from tests.integration.conftest import (
    STREAMSCRIBE,
    MediaServer,
    Pipeline,
    default_group,
    free_port,
    kill_tree,
    port_is_free,
    ready,
    start_pipeline,
    wait_for,
)
from tests.integration.speech import Speech

CHUNKS = re.compile(r'^streamscribe_chunks_total\{stage="transcribe"\} (\S+)$', re.MULTILINE)
TAKEN = re.compile(r"port \d+ is taken: /metrics, /healthz and /readyz are on port (\d+)")
# Short chunks: the test media (about two minutes of speech) becomes 40 and more of them,
# keyed media:seq over the default 6 partitions, so every worker's partitions get some.
SHORT_CHUNKS = {
    "STREAMSCRIBE_INGEST__CHUNK_MIN_SECONDS": "1.5",
    "STREAMSCRIBE_INGEST__CHUNK_MAX_SECONDS": "3",
    "STREAMSCRIBE_INGEST__OVERLAP_SECONDS": "1",  # below the shortest chunk
    "STREAMSCRIBE_TOPICS__PARTITIONS": str(TopicSettings().partitions),
}
SETTLE_SECONDS = 300.0  # a rebalance on a loaded 2-core machine: generous
INDEXED_SECONDS = 900.0
# pytest's own timeout (600 s in pyproject) must not cut these waits short: with a second
# suite on the same 2 cores, a worker's start, the rebalance and the media took 10 minutes
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def adjacent_ports(replicas: int) -> dict[str, int]:
    """The default layout (ingest, transcribe, embed on three adjacent ports, replicas stepping
    by REPLICA_PORT_STEP) at a base where every port is free: another stack on this host may
    hold the defaults themselves."""
    while True:
        base = free_port()
        ports = [base + i + REPLICA_PORT_STEP * r for i in range(3) for r in range(replicas)]
        if all(port < 65536 and port_is_free(port) for port in ports):
            return {"INGEST": base, "TRANSCRIBE": base + 1, "EMBED": base + 2}


def _up(tmp_path: Path, replicas: int) -> tuple[Pipeline, dict[str, int]]:
    ports = adjacent_ports(replicas)
    env = {f"STREAMSCRIBE_{name}__HTTP_PORT": str(port) for name, port in ports.items()}
    # its own embedded broker: the transcribe group holds these workers only
    box = start_pipeline(
        f"127.0.0.1:{free_port()}", tmp_path / "data", replicas, **SHORT_CHUNKS, **env
    )
    box.env["STREAMSCRIBE_API_URL"] = f"http://127.0.0.1:{ports['EMBED']}"
    return box, ports


def _members(box: Pipeline) -> int | None:
    """How many members the transcribe group has once it is stable, else None."""

    async def describe() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=box.bootstrap)
        await admin.start()
        try:
            return await admin.describe_consumer_groups([default_group(box.prefix, "transcribe")])
        finally:
            await admin.close()

    [response] = asyncio.run(describe())
    [group] = response.groups  # (error, id, state, protocol type, protocol, members, ...)
    error, _, state, _, _, members = group[:6]
    return None if error or state != "Stable" else len(members)


def _settled(box: Pipeline, workers: int) -> bool:
    """Every transcribe worker is a member of the group's stable generation, so each holds
    some of its 6 partitions (round robin). The embedded broker does not report the
    assignments themselves."""
    return _members(box) == workers


def _chunks_handled(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        found = CHUNKS.search(response.read().decode())
    return float(found.group(1)) if found else 0.0


def _share_one_media(
    box: Pipeline, ports: list[int], media_server: MediaServer, speech: Speech
) -> dict[int, float]:
    """Submit the speech once every worker holds partitions; each worker's chunk count once
    the media is indexed."""
    wait_for(lambda: _settled(box, len(ports)), SETTLE_SECONDS, "the group to settle")
    submitted = box.cli("submit", media_server.url(speech.path.name))
    assert submitted.returncode == 0, submitted.stderr
    media_id = submitted.stdout.strip()
    status = box.wait_state(media_id, {"indexed", "failed"}, INDEXED_SECONDS)
    assert status["state"] == "indexed", status
    assert status["chunks"]["total"] >= 40, status  # enough to reach every partition
    handled = {port: _chunks_handled(port) for port in ports}
    print(f"\n{status['chunks']['total']} chunks; handled by port: {handled}")  # shown with -s
    return handled


def test_replicas_and_workers_started_beside_up_share_one_media(
    tmp_path: Path, media_server: MediaServer, speech: Speech
) -> None:
    """`up --replicas 2` on the default port layout, and two more transcribe workers started
    beside it as a user would (same settings, so the same taken port): all four take chunks of
    the one media."""
    box, ports = _up(tmp_path, 2)
    extra: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for n in range(2):
            log = tmp_path / f"worker-{n}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [STREAMSCRIBE, "worker", "transcribe"], env=box.env, stdout=out, stderr=out,
                    text=True,
                )  # fmt: skip
            extra.append((process, log))

        def taken_ports() -> list[int] | None:
            found = [TAKEN.search(log.read_text()) for _, log in extra]
            for process, log in extra:
                assert process.poll() is None, log.read_text()[-3000:]
            return [int(m.group(1)) for m in found if m] if all(found) else None

        moved = wait_for(taken_ports, 120, "the extra workers to pick free ports")
        for port in moved:
            wait_for(lambda port=port: ready(port), 300, f"the worker on port {port} ready")
        replicas = [ports["TRANSCRIBE"] + REPLICA_PORT_STEP * r for r in range(2)]
        handled = _share_one_media(box, [*replicas, *moved], media_server, speech)
        assert all(count > 0 for count in handled.values()), handled
    finally:
        try:
            for process, _ in extra:
                process.terminate()
            for process, _ in extra:
                try:
                    process.wait(90)
                except subprocess.TimeoutExpired:
                    kill_tree(process.pid)
        finally:
            box.stop()  # whatever stopping the extra workers raised: no stack outlives its test

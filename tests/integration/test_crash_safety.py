"""Crash safety on the real broker: SIGTERM finishes and commits the chunk in hand, a replay from
the earliest offset changes nothing in the store, and kill -9 loses and doubles nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import apsw
import jiwer
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamscribe.embed.store.ledger import Ledger
from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.integration.conftest import (
    STREAMSCRIBE,
    MediaServer,
    Pipeline,
    default_group,
    free_port,
    model_env,
    ready,
    start_pipeline,
    wait_for,
)
from tests.integration.conftest import (
    read_topic as _read,
)
from tests.integration.speech import SENTENCES, Speech, make_speech, words

pytestmark = pytest.mark.integration


def _env(kafka: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "STREAMSCRIBE_TOPICS__PREFIX": f"cs-{uuid.uuid4().hex[:8]}.",
        "STREAMSCRIBE_TOPICS__PARTITIONS": "3",
        "STREAMSCRIBE_DATA_DIR": str(data_dir),
        "STREAMSCRIBE_TEMP_ROOT": str(data_dir / "tmp"),
        **model_env(),
        **extra,
    }


def _metric(port: int, name: str) -> float:
    """The sum of a metric's samples (FastStream's are one per handler: a topic and its
    retry topic)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def _committed(kafka: str, group: str, topic: str) -> int:
    return asyncio.run(_committed_async(kafka, group, topic))


async def _committed_async(kafka: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in partitions]
        return sum(offset or 0 for offset in offsets)
    finally:
        await consumer.stop()


def test_sigterm_mid_chunk_commits_that_chunk_once(kafka: str, tmp_path: Path) -> None:
    port = free_port()
    env = _env(kafka, tmp_path, STREAMSCRIBE_TRANSCRIBE__HTTP_PORT=str(port))
    speech = make_speech(tmp_path, SENTENCES[:12], "sigterm")
    with subprocess.Popen([STREAMSCRIBE, "worker", "transcribe"], env=env) as worker:
        try:
            _sigterm_mid_chunk(worker, env, port, speech)
        finally:
            worker.kill()
    _check_nothing_redelivered(kafka, env, port)


def _sigterm_mid_chunk(
    worker: subprocess.Popen[bytes], env: dict[str, str], port: int, speech: Speech
) -> None:
    wait_for(lambda: ready(port, 2), 120, "the transcribe worker")
    submitted = subprocess.run(
        [STREAMSCRIBE, "submit", str(speech.path)], env=env, capture_output=True, text=True
    )
    assert submitted.returncode == 0, submitted.stderr
    wait_for(
        lambda: _metric(port, "streamscribe_received_messages_in_process") >= 1,
        60,
        "a chunk in hand",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(45) == 0
    prefix = env["STREAMSCRIBE_TOPICS__PREFIX"]
    transcripts = _read(env["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"], f"{prefix}media.transcript")
    committed = _committed(
        env["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"],
        default_group(prefix, "transcribe"),
        f"{prefix}media.audio",
    )
    assert len(transcripts) >= 1  # the chunk in hand was finished, not dropped
    assert committed == len(transcripts)  # ...and committed: nothing will be redelivered


def _check_nothing_redelivered(kafka: str, env: dict[str, str], port: int) -> None:
    """A restarted worker transcribes only what was left: every chunk exactly once."""
    prefix = env["STREAMSCRIBE_TOPICS__PREFIX"]
    done_before = len(_read(kafka, f"{prefix}media.transcript"))
    total = len(_read(kafka, f"{prefix}media.audio"))
    with subprocess.Popen([STREAMSCRIBE, "worker", "transcribe"], env=env) as worker:
        try:
            wait_for(lambda: ready(port, 2), 120, "the restarted worker")
            wait_for(
                lambda: (
                    _metric(port, 'streamscribe_chunks_total{stage="transcribe"}')
                    >= total - done_before
                ),
                120,
                "the remaining chunks",
            )
        finally:
            worker.terminate()
            worker.wait(45)
    seqs = Counter(json.loads(r.value)["seq"] for r in _read(kafka, f"{prefix}media.transcript"))
    assert sorted(seqs) == list(range(total))
    assert set(seqs.values()) == {1}  # none transcribed twice


def _store_ids(data_dir: Path) -> tuple[list[str], list[str]]:
    """Every passage id in the vector tables and every chunk id in the ledger, sorted."""
    connection = apsw.Connection(str(data_dir / "streamscribe.db"))
    try:
        passages = [row[0] for row in connection.execute("SELECT id FROM passages")]
        chunks = [
            f"{media_id}:{seq:06d}"
            for media_id, seq in connection.execute("SELECT media_id, seq FROM chunks")
        ]
    finally:
        connection.close()
    return sorted(passages), sorted(chunks)


def test_replaying_transcripts_from_the_earliest_offset_changes_nothing(
    pipeline: Pipeline, media_server: MediaServer, short_speech: Speech
) -> None:
    url = media_server.url(short_speech.path.name) + "?replay=1"
    result = pipeline.cli("submit", url, "--wait", timeout=300)
    assert result.returncode == 0, result.stderr
    before = _store_ids(pipeline.data_dir)
    port = free_port()
    env = {
        **pipeline.env,
        "STREAMSCRIBE_EMBED__GROUP_ID": f"replay-{uuid.uuid4().hex[:6]}",
        "STREAMSCRIBE_EMBED__HTTP_PORT": str(port),
    }
    replayer = subprocess.Popen([STREAMSCRIBE, "worker", "embed"], env=env)
    try:
        wait_for(lambda: ready(port, 2), 120, "the replaying embed worker")
        wait_for(
            lambda: _metric(port, 'streamscribe_chunks_total{stage="embed"}') >= len(before[1]),
            180,
            "the replay to reach the end of media.transcript",
        )
    finally:
        replayer.terminate()
        replayer.wait(45)
    after = _store_ids(pipeline.data_dir)
    assert after == before
    assert len(set(after[0])) == len(after[0])


@pytest.mark.timeout(1800)  # its own waits are longer than pytest's 600 s, for a loaded machine
def test_kill_9_of_random_workers_loses_and_doubles_nothing(
    kafka: str, tmp_path: Path, media_server: MediaServer
) -> None:
    speeches = [make_speech(tmp_path, SENTENCES[i * 8 : i * 8 + 8], f"chaos{i}") for i in range(4)]
    for speech in speeches:
        (media_server.root / speech.path.name).write_bytes(speech.path.read_bytes())
    pipeline = start_pipeline(kafka, tmp_path / "data", replicas=2)
    try:
        ids = []
        for speech in speeches:
            result = pipeline.cli("submit", media_server.url(speech.path.name))
            assert result.returncode == 0, result.stderr
            ids.append(result.stdout.strip())
        _kill_randomly(pipeline.process.pid, kills=20)
        for media_id in ids:
            status = pipeline.wait_state(media_id, {"indexed", "failed"}, timeout=900)
            assert status["state"] == "indexed", status
        ledger = Ledger(pipeline.data_dir / "streamscribe.db")
        vectors = SQLiteVectors(pipeline.data_dir / "streamscribe.db")
        passages, chunks = _store_ids(pipeline.data_dir)
        assert len(set(passages)) == len(passages)
        counts = vectors.counts()  # two embed workers on one file: the three tables agree
        assert counts["passages"] == counts["passages_fts"] == counts["passages_vec"]
        assert counts["passages"] == len(passages)
        indexed = Counter(
            json.loads(r.value)["media_id"] for r in _read(kafka, pipeline.topic("media.indexed"))
        )
        for media_id, speech in zip(ids, speeches, strict=True):
            record = ledger.get(media_id)
            assert record is not None
            assert record.chunk_count is not None
            assert record.chunks_stored == record.chunk_count
            assert record.passages == len([p for p in passages if p.startswith(media_id)])
            assert indexed[media_id] == 1  # one completion, one announcement
            assert [c for c in chunks if c.startswith(media_id)] == [
                f"{media_id}:{seq:06d}" for seq in range(record.chunk_count)
            ]
            heard = " ".join(segment.text for segment in ledger.segments(media_id))
            # every chunk's words, in order: a missing or misplaced chunk blows the error rate
            assert jiwer.wer(words(speech.text), words(heard)) <= 0.2
        wait_for(lambda: not list(pipeline.temp_root.glob("ingest/*")), 60, "temp dirs to go")
    finally:
        pipeline.stop()


def _kill_randomly(up_pid: int, kills: int) -> None:
    """SIGKILL a random worker of `up` every couple of seconds while media flow."""
    rng = random.Random(7)
    for _ in range(kills):
        workers = [p for p in psutil.Process(up_pid).children() if "worker" in p.cmdline()]
        if workers:
            rng.choice(workers).kill()
        time.sleep(rng.uniform(1.5, 4.0))

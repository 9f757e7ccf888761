"""One process for one box (`up --single-process`) on its own embedded broker: a kill -9 of the
whole process tree loses nothing submitted, and a restart when idle loses no status."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from streamscribe.embed.store.sqlite import SQLiteVectors
from tests.integration.conftest import (
    MediaServer,
    Pipeline,
    free_port,
    launch_up,
    start_pipeline,
)
from tests.integration.speech import SENTENCES, make_speech

pytestmark = pytest.mark.integration


def _kill_tree(pid: int) -> None:
    """SIGKILL `up` and everything under it (the worker, the broker, a decoder child)."""
    root = psutil.Process(pid)
    for process in [*root.children(recursive=True), root]:
        process.kill()
    psutil.wait_procs([root], timeout=30)


def _states(pipeline: Pipeline, ids: list[str]) -> dict[str, str]:
    return {media_id: (pipeline.status(media_id) or {}).get("state", "") for media_id in ids}


def test_kill_9_of_the_whole_box_then_up_again_ends_every_media_indexed(
    tmp_path: Path, media_server: MediaServer
) -> None:
    speeches = [make_speech(tmp_path, SENTENCES[i * 6 : i * 6 + 6], f"box{i}") for i in range(3)]
    for speech in speeches:
        (media_server.root / speech.path.name).write_bytes(speech.path.read_bytes())
    own_broker = f"127.0.0.1:{free_port()}"  # nobody listens: `up` starts Tansu there
    box = start_pipeline(own_broker, tmp_path / "data", 1, "--single-process")
    ids = []
    for speech in speeches:
        result = box.cli("submit", media_server.url(speech.path.name))
        assert result.returncode == 0, result.stderr
        ids.append(result.stdout.strip())
    deadline = time.monotonic() + 120  # in flight: the ledger has them all, none indexed yet
    while set(_states(box, ids).values()) - {"requested", "transcribing"}:
        assert time.monotonic() < deadline, _states(box, ids)
        time.sleep(0.5)
    _kill_tree(box.process.pid)

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

"""Re-submitting an indexed media: `--wait` waits for the re-run, and each completion is
announced once (the ledger decides, by run)."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import apsw
import pytest

from tests.integration.conftest import MediaServer, Pipeline, read_topic
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration


def _chunk_runs(data_dir: Path, media_id: str) -> list[str]:
    connection = apsw.Connection(str(data_dir / "streamscribe.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = connection.execute("SELECT run FROM chunks WHERE media_id = ?", (media_id,))
        return [str(row[0]) for row in rows]
    finally:
        connection.close()


def test_a_resubmit_is_indexed_only_after_its_own_last_chunk(
    pipeline: Pipeline, media_server: MediaServer, short_speech: Speech
) -> None:
    url = media_server.url(short_speech.path.name) + "?resubmit=1"
    first = pipeline.cli("submit", url, "--wait", timeout=300)
    assert first.returncode == 0, first.stderr
    media_id = first.stdout.strip()
    before = pipeline.status(media_id)
    assert before is not None
    assert before["state"] == "indexed"

    resubmitted_at = time.time()
    second = pipeline.cli("submit", url, "--wait", timeout=300)
    returned_at = time.time()
    assert second.returncode == 0, second.stderr
    after = pipeline.status(media_id)
    assert after is not None
    assert after["state"] == "indexed"
    assert after["run"] > before["run"]
    # --wait returned once the re-run itself was complete: every chunk stored is the re-run's
    runs = _chunk_runs(pipeline.data_dir, media_id)
    assert runs == [after["run"]] * after["chunks"]["total"]
    indexed_at = calendar.timegm(time.strptime(after["indexed_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert resubmitted_at - 1 <= indexed_at <= returned_at + 1

    records = read_topic(pipeline.bootstrap, pipeline.topic("media.indexed"))
    events = [json.loads(r.value) for r in records if json.loads(r.value)["media_id"] == media_id]
    assert sorted(str(e["run"]) for e in events) == [before["run"], after["run"]]

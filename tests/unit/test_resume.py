"""Resuming after a restart (`resume_unfinished`) on a real SQLite ledger and FastStream's test
broker: unfinished URLs are requested again as a new run that keeps the submission's callback;
a local file fails as interrupted; finished media are left alone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.cli.resume import resume_unfinished
from streamscribe.common.settings import CommonSettings, KafkaSettings, TopicSettings
from streamscribe.embed.store.ledger import Ledger
from tests.factories import transcript_chunk

OLD = "1700000000000-aaaa"
HOOK = "https://hooks.example.org/done?token=t1"


async def test_unfinished_media_resume_as_a_new_run_with_their_callback(tmp_path: Path) -> None:
    settings = CommonSettings(
        kafka=KafkaSettings(), topics=TopicSettings(prefix=f"t-{uuid.uuid4().hex[:8]}.")
    )
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.request("m-hook", OLD, "https://example.org/a.mp3", HOOK)
    ledger.request("m-plain", OLD, "https://example.org/b.mp3")
    ledger.request("m-file", OLD, "file-upload")  # a local file: ingest cannot fetch it again
    ledger.request("m-done", OLD, "https://example.org/c.mp3", HOOK)
    ledger.store_chunk(transcript_chunk(0, 1, run=OLD, media_id="m-done"), 1)

    broker = KafkaBroker()
    requested: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    @broker.subscriber(settings.topics.requested)
    async def on_requested(body: dict[str, Any]) -> None:
        requested.append(body)

    @broker.subscriber(settings.topics.failed)
    async def on_failed(body: dict[str, Any]) -> None:
        failed.append(body)

    async with TestKafkaBroker(broker) as running:
        assert await resume_unfinished(running, settings, ledger) == 3

    by_media = {event["media_id"]: event for event in requested}
    assert set(by_media) == {"m-hook", "m-plain"}
    assert by_media["m-hook"]["callback_url"] == HOOK
    assert by_media["m-plain"].get("callback_url") is None
    for media_id, event in by_media.items():
        record = ledger.get(media_id)
        assert record is not None
        assert (record.run, record.state) == (event["run"], "requested")
        assert record.run > OLD
        assert record.callback_url == event.get("callback_url")
    assert [(event["media_id"], event["reason"]) for event in failed] == [("m-file", "interrupted")]
    ledger.close()

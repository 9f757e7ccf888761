"""`status` and `transcript` read the ledger: no broker needed, partial transcripts refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamscribe.cli.main import app
from streamscribe.embed.store.ledger import Ledger, MediaRecord
from tests.factories import transcript_chunk as chunk

# no broker listens here: these commands must not need one
NO_BROKER = {"STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**NO_BROKER, "STREAMSCRIBE_DATA_DIR": str(tmp_path)}


def test_transcript_of_a_half_indexed_media_says_so_and_fails(
    env: dict[str, str], tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "streamscribe.db")
    ledger.store_chunk(chunk(0, 3), passages=1)
    ledger.store_chunk(chunk(2, 3), passages=1)
    result = CliRunner().invoke(app, ["transcript", "m1"], env=env)
    assert result.exit_code == 1
    assert "transcribing, 2/3 chunks stored" in " ".join(result.output.split())
    assert str(tmp_path) not in result.output


def test_transcript_of_an_indexed_media_in_time_order(env: dict[str, str], tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "streamscribe.db")
    for seq in (1, 0):
        ledger.store_chunk(chunk(seq, 2), passages=1)
    result = CliRunner().invoke(app, ["transcript", "m1"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.index("chunk 0") < result.output.index("chunk 1")


def test_status_reads_the_ledger(env: dict[str, str], tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "streamscribe.db")
    ledger.store_chunk(chunk(0, 2), passages=3)
    ledger.fail("other", None, {"stage": "ingest", "reason": "not_found", "detail": "404"}, None)
    one = CliRunner().invoke(app, ["status", "m1", "--json"], env=env)
    assert one.exit_code == 0, one.output
    record = json.loads(one.output)
    assert (record["state"], record["chunks"], record["passages"]) == (
        "transcribing",
        {"total": None, "stored": 1},
        3,
    )
    every = json.loads(CliRunner().invoke(app, ["status", "--json"], env=env).output)
    assert {r["media_id"]: r["state"] for r in every} == {"m1": "transcribing", "other": "failed"}
    missing = CliRunner().invoke(app, ["status", "nope"], env=env)
    assert missing.exit_code == 1
    assert "no media nope" in missing.output


YTDLP_404 = "ERROR: [generic] talk: Unable to download webpage: HTTP Error 404 [/x]"


def test_messages_are_shown_verbatim(env: dict[str, str], tmp_path: Path) -> None:
    """yt-dlp's "[generic]" and any bracket are text, never Rich markup."""
    ledger = Ledger(tmp_path / "streamscribe.db")
    failure = {"stage": "ingest", "reason": "not_found", "detail": YTDLP_404}
    ledger.fail("gone", None, failure, None)
    table = CliRunner().invoke(app, ["status"], env={**env, "COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    assert YTDLP_404 in table.output
    refused = CliRunner().invoke(app, ["transcript", "[generic]"], env=env)
    assert refused.exit_code == 1
    assert "no media [generic]" in refused.output


async def test_wait_prints_a_failure_verbatim() -> None:
    from rich.console import Console

    from streamscribe.cli.progress import show_progress

    failure = {"stage": "ingest", "reason": "not_found", "detail": YTDLP_404}
    record = MediaRecord("m", "r", "failed", None, None, 0, 0, failure, 0.0, 0.0, None)

    async def records() -> AsyncIterator[MediaRecord]:
        yield record

    out = Console(record=True, width=400)
    assert await show_progress(records(), 10, out) == 1
    assert f"failed at ingest: not_found: {YTDLP_404}" in out.export_text()

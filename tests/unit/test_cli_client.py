"""`status`, `search` and `transcript` are clients of the HTTP API: they need no broker and no
local database, refuse partial transcripts, and say what to start when the API is not there."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker
from rich.console import Console
from typer.testing import CliRunner

from streamscribe.cli.main import app
from streamscribe.cli.tables import search_table
from tests.api_server import api_on, serving
from tests.factories import transcript_chunk as chunk

# no broker listens here: these commands must not need one
NO_BROKER = {"STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"}
LONG_ID = "m-0123456789abcdef0123"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The CLI's environment, pointed at an API holding: m1 indexed (2 chunks, stored out of
    order), m3 with 2 of 3 chunks, `other` failed. The CLI's own data dir is empty."""
    chunks = [chunk(1, 2), chunk(0, 2), chunk(0, 3, media_id="m3"), chunk(2, 3, media_id="m3")]
    api = api_on(tmp_path / "pipeline", KafkaBroker(), chunks)
    assert api.index is not None
    failure = {"stage": "ingest", "reason": "not_found", "detail": "404"}
    api.index.ledger.fail("other", None, failure, None)
    with serving(api) as url:
        yield {
            **NO_BROKER,
            "STREAMSCRIBE_DATA_DIR": str(tmp_path / "cli"),
            "STREAMSCRIBE_API_URL": url,
        }


def test_transcript_of_a_half_indexed_media_says_so_and_fails(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["transcript", "m3"], env=env)
    assert result.exit_code == 1
    assert "transcribing, 2/3 chunks stored" in " ".join(result.output.split())
    assert str(tmp_path) not in result.output


def test_transcript_of_an_indexed_media_in_time_order(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["transcript", "m1", "--format", "srt"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1\n00:00:01,000 --> 00:00:02,000\nchunk 0")
    assert result.output.index("chunk 0") < result.output.index("chunk 1")


def test_status_asks_the_api(env: dict[str, str]) -> None:
    one = CliRunner().invoke(app, ["status", "m3", "--json"], env=env)
    assert one.exit_code == 0, one.output
    record = json.loads(one.output)
    assert (record["state"], record["chunks"]) == ("transcribing", {"total": 3, "stored": 2})
    every = json.loads(CliRunner().invoke(app, ["status", "--json"], env=env).output)
    states = {r["media_id"]: r["state"] for r in every}
    assert states == {"m1": "indexed", "m3": "transcribing", "other": "failed"}
    missing = CliRunner().invoke(app, ["status", "nope"], env=env)
    assert missing.exit_code == 1
    assert "no media nope" in missing.output


def test_search_asks_the_api(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["search", "chunk 1", "-k", "2", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert {hit["media_id"] for hit in json.loads(result.output)} <= {"m1", "m3"}


def test_search_on_an_empty_index_fails_saying_so(tmp_path: Path) -> None:
    with serving(api_on(tmp_path, KafkaBroker())) as url:
        result = CliRunner().invoke(app, ["search", "anything", "--api", url], env=NO_BROKER)
    assert result.exit_code == 1
    assert "nothing is indexed yet" in result.output


@pytest.mark.parametrize("command", [["status"], ["search", "x"], ["transcript", "m1"]])
def test_an_unreachable_api_says_what_to_start(command: list[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = CliRunner().invoke(app, [*command, "--api", url], env=NO_BROKER)
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"cannot reach the streamscribe HTTP API at {url}" in output
    assert "streamscribe up" in output
    assert "STREAMSCRIBE_API_URL" in output
    assert "Traceback" not in output


def test_dlq_list_of_an_unknown_topic_fails() -> None:
    result = CliRunner().invoke(app, ["dlq", "list", "media.requestd"], env=NO_BROKER)
    assert result.exit_code == 1
    assert "unknown topic 'media.requestd'" in result.output


def test_ids_are_shortened_in_an_80_column_table_and_the_text_keeps_the_width() -> None:
    hit = {"score": 0.5, "start": 61.0, "media_id": LONG_ID, "text": "words " * 40}
    out = io.StringIO()
    Console(file=out, width=80).print(search_table([hit], 80))
    assert "m-0123456789…" in out.getvalue()
    assert LONG_ID not in out.getvalue()
    assert "1:01" in out.getvalue()
    text_lines = [line for line in out.getvalue().splitlines() if "words" in line]
    assert len(text_lines) <= 3 * len("words " * 40) / 100


def test_api_option_takes_only_http_urls() -> None:
    result = CliRunner().invoke(app, ["status", "--api", "file:///etc/passwd"], env=NO_BROKER)
    assert result.exit_code == 1
    assert "--api takes an http:// or https:// URL" in result.output


YTDLP_404 = "ERROR: [generic] talk: Unable to download webpage: HTTP Error 404 [/x]"


def test_messages_are_shown_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """yt-dlp's "[generic]" and any bracket are text, never Rich markup."""
    monkeypatch.setenv("COLUMNS", "400")  # wide enough for the message on one line
    api = api_on(tmp_path, KafkaBroker())
    assert api.index is not None
    failure = {"stage": "ingest", "reason": "not_found", "detail": YTDLP_404}
    api.index.ledger.fail("gone", None, failure, None)
    with serving(api) as url:
        env = {**NO_BROKER, "STREAMSCRIBE_API_URL": url}
        table = CliRunner().invoke(app, ["status"], env=env)
        refused = CliRunner().invoke(app, ["transcript", "[generic]"], env=env)
    assert table.exit_code == 0, table.output
    assert YTDLP_404 in table.output
    assert refused.exit_code == 1
    assert "media_id" in refused.output
    assert "'^[A-Za-z0-9]" in refused.output  # the API's pattern, brackets and all


def test_keys_are_created_listed_used_and_revoked_through_the_api(tmp_path: Path) -> None:
    chunks = [chunk(0, 1)]
    with serving(api_on(tmp_path, KafkaBroker(), chunks)) as url:
        env = {**NO_BROKER, "STREAMSCRIBE_API_URL": url}
        first = CliRunner().invoke(app, ["keys", "create", "ops", "--scope", "admin"], env=env)
        assert first.exit_code == 0, first.output
        admin = first.stdout.strip().splitlines()[-1]
        assert admin.startswith("ss_")
        keyed = {**env, "STREAMSCRIBE_API_KEY": admin}
        without = CliRunner().invoke(app, ["status", "m1"], env=env)
        assert without.exit_code == 1  # a key exists now: loopback needs one too
        assert "API key" in without.output
        reader = CliRunner().invoke(app, ["keys", "create", "ro", "--scope", "read"], env=keyed)
        read_key = reader.stdout.strip().splitlines()[-1]
        as_reader = {**env, "STREAMSCRIBE_API_KEY": read_key}
        assert CliRunner().invoke(app, ["status", "m1"], env=as_reader).exit_code == 0
        refused = CliRunner().invoke(app, ["forget", "m1"], env=as_reader)
        assert refused.exit_code == 1
        assert "scope read" in refused.output
        listed = json.loads(CliRunner().invoke(app, ["keys", "list", "--json"], env=keyed).output)
        assert {(k["name"], k["scope"]) for k in listed} == {("ops", "admin"), ("ro", "read")}
        assert admin not in json.dumps(listed)
        assert CliRunner().invoke(app, ["keys", "revoke", "ro"], env=keyed).exit_code == 0
        revoked = CliRunner().invoke(app, ["status", "m1"], env=as_reader)
        assert revoked.exit_code == 1
        assert "revoked" in revoked.output
        forgot = CliRunner().invoke(app, ["forget", "m1"], env=keyed)
        assert forgot.exit_code == 0, forgot.output
        assert CliRunner().invoke(app, ["status", "m1"], env=keyed).exit_code == 1


def test_status_says_when_speech_was_left_without_words(tmp_path: Path) -> None:
    holed = chunk(0, 1).model_copy(
        update={"speech_redecoded_seconds": 4.0, "speech_uncovered_seconds": 1.5}
    )
    with serving(api_on(tmp_path, KafkaBroker(), [holed])) as url:
        env = {**NO_BROKER, "STREAMSCRIBE_API_URL": url, "COLUMNS": "100"}
        table = CliRunner().invoke(app, ["status"], env=env)
        one = CliRunner().invoke(app, ["status", "m1", "--json"], env=env)
    assert table.exit_code == 0, table.output
    assert "1.5 s of speech without words" in table.output
    assert json.loads(one.output)["speech"] == {"redecoded_seconds": 4.0, "uncovered_seconds": 1.5}

"""`curl` against every documented endpoint of the HTTP API of a running pipeline (`up`): a URL
submitted by POST ends indexed, its transcript and passages come back, errors are JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.integration.conftest import MediaServer, Pipeline, wait_for
from tests.integration.speech import Speech, words

pytestmark = pytest.mark.integration


OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.json"


def curl(*args: str, key: str | None = None) -> tuple[int, str]:
    """(HTTP status, body) of one `curl` call, with `key` when given."""
    auth = ["-H", f"Authorization: Bearer {key}"] if key else []
    result = subprocess.run(
        [require_tool("curl"), "-sS", "--max-time", "60", "-w", "\n%{http_code}", *auth, *args],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def get(url: str, key: str | None) -> tuple[int, Any]:
    status, body = curl(url, key=key)
    return status, json.loads(body)


def test_every_documented_endpoint_answers_curl(
    pipeline: Pipeline, media_server: MediaServer, short_speech: Speech
) -> None:
    api = pipeline.api_url
    status, _ = curl(f"{api}/media")
    assert status == 401  # keys are required here
    key = pipeline.env["STREAMSCRIBE_API_KEY"]
    request = {"url": media_server.url(short_speech.path.name), "media_id": "curl-1"}
    status, body = curl("-X", "POST", f"{api}/media", "-H", "content-type: application/json",
                        "-d", json.dumps(request), key=key)  # fmt: skip
    assert status == 202, body
    submitted = json.loads(body)
    assert submitted["media_id"] == "curl-1"

    status, early = get(f"{api}/media/curl-1/transcript", key)
    assert (status, early["error"].split(" is ")[0]) == (409, "curl-1")

    def indexed() -> dict[str, Any] | None:
        status, record = get(f"{api}/media/curl-1", key)
        assert status == 200, record
        assert record["state"] != "failed", record
        return (
            record if record["state"] == "indexed" and record["run"] == submitted["run"] else None
        )

    wait_for(indexed, 600, "curl-1 to be indexed", every=2)
    assert "curl-1" in {row["media_id"] for row in get(f"{api}/media", key)[1]}

    status, text = curl(f"{api}/media/curl-1/transcript?format=txt", key=key)
    assert status == 200
    spoken, heard = set(words(short_speech.text).split()), set(words(text).split())
    assert len(spoken & heard) >= len(spoken) // 2, text
    for fmt, marker in (("srt", " --> "), ("vtt", "WEBVTT"), ("json", '"start"')):
        status, document = curl(f"{api}/media/curl-1/transcript?format={fmt}", key=key)
        assert (status, marker in document) == (200, True), document[:200]

    sentence, _ = short_speech.sentence_at(0)
    query = "+".join(words(sentence).split()[:6])
    status, found = get(f"{api}/search?q={query}&k=10&mode=hybrid", key)
    assert status == 200
    # the session's other media speak the same sentences: this one is among the best
    assert "curl-1" in {hit["media_id"] for hit in found["hits"]}, found

    assert get(f"{api}/openapi.json", key) == (200, json.loads(OPENAPI.read_text()))
    status, missing = get(f"{api}/media/nobody-here", key)
    assert (status, missing) == (404, {"error": "no media nobody-here"})
    status, refused = get(f"{api}/search?q=", key)
    assert status == 400
    assert refused["error"]

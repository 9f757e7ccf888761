"""The HTTP API (FastAPI) on a real SQLite index and FastStream's test broker: every route, its
errors as JSON, the URL guard at submission, forgetting a media."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.common.settings import TopicSettings
from tests.api_server import ServedApi, api_on
from tests.factories import transcript_chunk

Client = tuple[httpx.AsyncClient, list[Any], ServedApi]


def chunks() -> list[Any]:
    """m1 indexed (2 chunks), m2 half-way."""
    return [
        transcript_chunk(seq, 2, media_id=media_id, text="budget talk part {seq}")
        for seq in range(2)
        for media_id in ("m1", "m2")[: 2 - seq]
    ]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    broker = KafkaBroker()
    published: list[Any] = []

    @broker.subscriber(TopicSettings().requested)
    async def requested(body: dict[str, Any]) -> None:
        published.append(body)

    api = api_on(tmp_path, broker, chunks())
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, published, api
    api.close()


async def test_post_media_publishes_the_request_and_records_it(client: Client) -> None:
    http, published, _ = client
    response = await http.post("/media", json={"url": "http://127.0.0.1:9/a.mp3"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["media_id"].startswith("m-")
    assert [(p["url"], p["run"]) for p in published] == [("http://127.0.0.1:9/a.mp3", body["run"])]
    status = await http.get(f"/media/{body['media_id']}")
    assert (status.status_code, status.json()["state"]) == (200, "requested")


@pytest.mark.parametrize(
    "body",
    [{"language": "en"}, [1], {"url": "http://127.0.0.1/x", "media_id": "../etc"}, {"url": ""}],
)
async def test_post_media_refuses_a_bad_request_with_json(client: Client, body: Any) -> None:
    http, published, _ = client
    response = await http.post("/media", content=json.dumps(body))
    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid request: ")
    assert published == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://10.1.2.3/a.mp3", "private"),
    ],
)
async def test_a_url_the_guard_refuses_is_a_422_with_its_reason(
    client: Client, url: str, reason: str
) -> None:
    http, published, _ = client
    response = await http.post("/media", json={"url": url})
    assert response.status_code == 422
    assert reason in response.json()["error"]
    assert published == []


@pytest.mark.parametrize(
    "path", ["/nothing-here", "/media/..%2F..%2Fetc", "/media/a/b/c", "/metrics-not"]
)
async def test_unknown_paths_answer_json(client: Client, path: str) -> None:
    response = await client[0].get(path)
    assert response.status_code in (404, 422)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


async def test_status_of_an_unknown_media_is_a_json_404(client: Client) -> None:
    response = await client[0].get("/media/nobody")
    assert response.status_code == 404
    assert response.json() == {"error": "no media nobody"}


@pytest.mark.parametrize(("fmt", "first"), [("txt", "budget"), ("srt", "1\n"), ("vtt", "WEBVTT")])
async def test_transcript_of_an_indexed_media_in_each_format(
    client: Client, fmt: str, first: str
) -> None:
    response = await client[0].get("/media/m1/transcript", params={"format": fmt})
    assert response.status_code == 200
    assert response.text.startswith(first)
    assert "part 0" in response.text
    assert "part 1" in response.text


async def test_transcript_as_json_is_the_segments(client: Client) -> None:
    response = await client[0].get("/media/m1/transcript?format=json")
    document = response.json()
    assert document["media_id"] == "m1"
    assert [s["text"] for s in document["segments"]] == ["budget talk part 0", "budget talk part 1"]


async def test_transcript_refuses_a_media_in_progress_and_an_unknown_format(
    client: Client,
) -> None:
    http = client[0]
    pending = await http.get("/media/m2/transcript")
    assert pending.status_code == 409
    assert "transcribing, 1/? chunks" in pending.json()["error"]
    unknown = await http.get("/media/m1/transcript?format=doc")
    assert unknown.status_code == 422
    assert "format" in unknown.json()["error"]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
async def test_search_finds_the_passages_in_each_mode(client: Client, mode: str) -> None:
    response = await client[0].get("/search", params={"q": "budget part 1", "k": 2, "mode": mode})
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 2
    assert body["index_empty"] is False
    assert {hit["media_id"] for hit in body["hits"]} <= {"m1", "m2"}


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 422), ("?q=", 400), ("?q=x&k=0", 422), ("?q=x&k=many", 422), ("?q=x&mode=fuzzy", 422)],
)
async def test_search_refuses_bad_parameters(client: Client, query: str, status: int) -> None:
    response = await client[0].get(f"/search{query}")
    assert response.status_code == status
    assert response.json()["error"]


async def test_a_wrong_method_is_a_json_405(client: Client) -> None:
    response = await client[0].put("/media")
    assert response.status_code == 405
    assert "accepts" in response.json()["error"]


async def test_recent_lists_the_media_newest_first_within_the_limit(client: Client) -> None:
    listed = (await client[0].get("/media")).json()
    assert {row["media_id"]: row["state"] for row in listed} == {
        "m1": "indexed",
        "m2": "transcribing",
    }
    assert len((await client[0].get("/media?limit=1")).json()) == 1
    assert (await client[0].get("/media?limit=0")).status_code == 422


async def test_search_on_an_empty_index_says_so(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker())
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        body = (await http.get("/search?q=anything")).json()
    api.close()
    assert body == {"hits": [], "index_empty": True}


async def test_a_forgotten_media_is_gone_and_comes_back_when_submitted_again(
    client: Client,
) -> None:
    http, _, api = client
    assert (await http.delete("/media/m1")).json() == {"media_id": "m1", "forgotten": True}
    assert (await http.get("/media/m1")).status_code == 404
    assert (await http.get("/media/m1/transcript")).status_code == 404
    found = (await http.get("/search", params={"q": "budget part 0", "k": 10})).json()
    assert {hit["media_id"] for hit in found["hits"]} == {"m2"}
    assert (await http.delete("/media/m1")).status_code == 404

    again = await http.post("/media", json={"url": "http://127.0.0.1:9/m1.mp3", "media_id": "m1"})
    assert again.status_code == 202
    for chunk in chunks():
        if chunk.media_id == "m1":
            chunk = chunk.model_copy(update={"run": again.json()["run"]})
            api.index.store(chunk, *_embedded(chunk))
    assert (await http.get("/media/m1")).json()["state"] == "indexed"
    found = (await http.get("/search", params={"q": "budget part 0", "k": 10})).json()
    assert "m1" in {hit["media_id"] for hit in found["hits"]}


def _embedded(chunk: Any) -> tuple[Any, Any]:
    from streamscribe.embed.passages import passages_for
    from tests.api_server import WordEmbedder

    passages = passages_for(chunk)
    return passages, WordEmbedder().embed([p.text for p in passages])


async def test_openapi_is_generated_and_every_route_is_in_it(client: Client) -> None:
    served = (await client[0].get("/openapi.json")).json()
    assert served == client[2].app.openapi()
    assert {"/media", "/media/{media_id}", "/media/{media_id}/transcript", "/search",
            "/keys", "/v1/audio/transcriptions", "/v1/models"} <= set(served["paths"])  # fmt: skip
    modes = served["paths"]["/search"]["get"]["parameters"]
    mode = next(p for p in modes if p["name"] == "mode")
    assert "keyword" in json.dumps(mode["schema"])

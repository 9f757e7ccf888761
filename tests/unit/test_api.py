"""The HTTP API on a real SQLite index and FastStream's test broker: every documented route,
its errors, and the OpenAPI document in step with docs/openapi.json."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.common.settings import TopicSettings
from streamscribe.embed.api import MediaApi
from streamscribe.embed.openapi import OPENAPI
from streamscribe.embed.settings import EmbedSettings
from tests.api_server import api_on
from tests.factories import transcript_chunk


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[Any]]]:
    broker = KafkaBroker()
    published: list[Any] = []

    @broker.subscriber(TopicSettings().requested)
    async def requested(body: dict[str, Any]) -> None:
        published.append(body)

    chunks = [  # media m1 indexed, m2 half-way
        transcript_chunk(seq, 2, media_id=media_id, text="budget talk part {seq}")
        for seq in range(2)
        for media_id in ("m1", "m2")[: 2 - seq]
    ]
    api = api_on(tmp_path, broker, chunks)
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, published
    api.close()


async def test_post_media_publishes_the_request_and_records_it(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    http, published = client
    response = await http.post("/media", json={"url": "https://example.org/a.mp3"})
    assert response.status_code == 202
    body = response.json()
    assert body["media_id"].startswith("m-")
    assert [(p["url"], p["run"]) for p in published] == [("https://example.org/a.mp3", body["run"])]
    status = await http.get(f"/media/{body['media_id']}")
    assert (status.status_code, status.json()["state"]) == (200, "requested")


@pytest.mark.parametrize(
    ("body", "status"),
    [({"language": "en"}, 422), ([1], 400), ({"url": "x", "media_id": "../etc"}, 422)],
)
async def test_post_media_refuses_a_bad_request(
    client: tuple[httpx.AsyncClient, list[Any]], body: Any, status: int
) -> None:
    http, published = client
    response = await http.post("/media", content=json.dumps(body))
    assert response.status_code == status
    assert response.json()["error"]
    assert published == []


async def test_status_of_an_unknown_media_is_a_json_404(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    response = await client[0].get("/media/nobody")
    assert response.status_code == 404
    assert response.json() == {"error": "no media nobody"}


@pytest.mark.parametrize(("fmt", "first"), [("txt", "budget"), ("srt", "1\n"), ("vtt", "WEBVTT")])
async def test_transcript_of_an_indexed_media_in_each_format(
    client: tuple[httpx.AsyncClient, list[Any]], fmt: str, first: str
) -> None:
    response = await client[0].get("/media/m1/transcript", params={"format": fmt})
    assert response.status_code == 200
    assert response.text.startswith(first)
    assert "part 0" in response.text
    assert "part 1" in response.text


async def test_transcript_as_json_is_the_segments(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    response = await client[0].get("/media/m1/transcript?format=json")
    document = response.json()
    assert document["media_id"] == "m1"
    assert [s["text"] for s in document["segments"]] == ["budget talk part 0", "budget talk part 1"]


async def test_transcript_refuses_a_media_in_progress_and_an_unknown_format(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    http = client[0]
    pending = await http.get("/media/m2/transcript")
    assert pending.status_code == 409
    assert "transcribing, 1/? chunks" in pending.json()["error"]
    assert (await http.get("/media/m1/transcript?format=doc")).status_code == 400


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
async def test_search_finds_the_passages_in_each_mode(
    client: tuple[httpx.AsyncClient, list[Any]], mode: str
) -> None:
    response = await client[0].get("/search", params={"q": "budget part 1", "k": 2, "mode": mode})
    assert response.status_code == 200
    body = response.json()
    assert len(body["hits"]) == 2
    assert body["index_empty"] is False
    assert {hit["media_id"] for hit in body["hits"]} <= {"m1", "m2"}


@pytest.mark.parametrize("query", ["", "?q=", "?q=x&k=0", "?q=x&k=many", "?q=x&mode=fuzzy"])
async def test_search_refuses_bad_parameters(
    client: tuple[httpx.AsyncClient, list[Any]], query: str
) -> None:
    response = await client[0].get(f"/search{query}")
    assert response.status_code == 400
    assert response.json()["error"]


async def test_a_wrong_method_is_405(client: tuple[httpx.AsyncClient, list[Any]]) -> None:
    assert (await client[0].delete("/media")).status_code == 405


async def test_recent_lists_the_media_newest_first_within_the_limit(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    listed = (await client[0].get("/media")).json()
    assert {row["media_id"]: row["state"] for row in listed} == {
        "m1": "indexed",
        "m2": "transcribing",
    }
    assert len((await client[0].get("/media?limit=1")).json()) == 1
    assert (await client[0].get("/media?limit=0")).status_code == 400


async def test_search_on_an_empty_index_says_so(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker())
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        body = (await http.get("/search?q=anything")).json()
    api.close()
    assert body == {"hits": [], "index_empty": True}


async def test_every_documented_path_is_served(
    client: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    served = (await client[0].get("/openapi.json")).json()
    assert served == OPENAPI
    api = MediaApi(EmbedSettings())
    for path in OPENAPI["paths"]:
        assert api.handles(path.replace("{id}", "m1")), path

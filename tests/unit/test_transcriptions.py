"""POST /v1/audio/transcriptions on FastStream's test broker: an upload is chunked by ingest's
chunk source and published, the answer waits for the ledger and comes in OpenAI's shapes; too
large, failed and overdue requests are refused as OpenAI's clients expect."""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.api.openai_shapes import answer
from streamscribe.common.events import AudioChunk, Segment, Transcript, Word
from streamscribe.common.settings import TopicSettings
from streamscribe.embed.passages import passages_for
from tests.api_server import ServedApi, WordEmbedder, api_on

WORDS = [("Budget", 0.2, 0.6), ("talks", 0.7, 1.1), ("resume.", 1.2, 1.6)]


def tone(seconds: float = 2.0, rate: int = 16_000) -> bytes:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return out.getvalue()


def spoken(chunk: AudioChunk) -> Transcript:
    """What transcribe would answer for `chunk`: one segment with its words."""
    words = [Word(start=s, end=e, word=f" {w}", probability=0.9) for w, s, e in WORDS]
    segment = Segment(start=0.2, end=1.6, text=" Budget talks resume.", words=words)
    return Transcript(
        media_id=chunk.media_id, seq=chunk.seq, start=chunk.start, end=chunk.end,
        final=chunk.final, chunk_count=chunk.chunk_count, source_url=chunk.source_url,
        language="en", run=chunk.run, segments=[segment],
    )  # fmt: skip


class Published(list[AudioChunk]):
    """The chunks published, and an event set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.first = asyncio.Event()


Setup = tuple[httpx.AsyncClient, ServedApi, Published]


@pytest.fixture
async def setup(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    """The API with a stand-in pipeline: every chunk published is 'transcribed' and stored,
    unless the test is marked `no_pipeline`."""
    broker = KafkaBroker()
    published = Published()
    options = getattr(request, "param", {})
    api = api_on(tmp_path, broker, **options)

    @broker.subscriber(TopicSettings().audio)
    async def audio(body: dict[str, Any]) -> None:
        chunk = AudioChunk.model_validate(body)
        published.append(chunk)
        published.first.set()
        if not options.get("transcription_wait_seconds"):
            transcript = spoken(chunk)
            passages = passages_for(transcript)
            vectors = WordEmbedder().embed([p.text for p in passages])
            await asyncio.to_thread(api.index.store, transcript, passages, vectors)

    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, api, published
    api.close()


def upload(fmt: str, **fields: Any) -> dict[str, Any]:
    return {
        "files": {"file": ("talk.wav", tone(), "audio/wav")},
        "data": {"model": "whisper-1", "response_format": fmt, **fields},
    }


async def test_an_upload_goes_through_the_pipeline_and_comes_back_verbose(setup: Setup) -> None:
    http, api, published = setup
    grains = {"timestamp_granularities[]": ["word", "segment"]}
    response = await http.post("/v1/audio/transcriptions", **upload("verbose_json", **grains))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "Budget talks resume."
    assert body["language"] == "en"
    assert [w["word"] for w in body["words"]] == ["Budget", "talks", "resume."]
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0.2, 1.6)]
    assert body["segments"][0]["avg_logprob"] == pytest.approx(math.log(0.9))
    assert published[-1].final
    record = api.index.ledger.get(published[0].media_id)
    assert record is not None
    assert (record.state, record.source_url) == ("indexed", "upload:talk.wav")
    # a WAV without tags: the upload's name titles it (the file on disk is named `media`)
    assert {chunk.metadata.title for chunk in published if chunk.metadata} == {"talk"}
    assert all(chunk.metadata for chunk in published)


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("json", lambda r: r.json() == {"text": "Budget talks resume."}),
        ("text", lambda r: r.text == "Budget talks resume.\n"),
        ("srt", lambda r: r.text.startswith("1\n00:00:00,200 --> ")),
        ("vtt", lambda r: r.text.startswith("WEBVTT")),
    ],
)
async def test_each_response_format(setup: Setup, fmt: str, check: Any) -> None:
    response = await setup[0].post("/v1/audio/transcriptions", **upload(fmt))
    assert response.status_code == 200, response.text
    assert check(response), response.text


@pytest.mark.parametrize("setup", [{"max_upload_bytes": 4096}], indirect=True)
async def test_a_file_over_the_limit_is_413_and_nothing_is_published(setup: Setup) -> None:
    http, _, published = setup
    response = await http.post("/v1/audio/transcriptions", **upload("json"))
    assert response.status_code == 413
    assert "at most 4096 bytes" in response.json()["error"]
    assert published == []


@pytest.mark.parametrize("setup", [{"transcription_wait_seconds": 0.5}], indirect=True)
async def test_past_the_wait_the_error_names_the_media_to_poll(setup: Setup) -> None:
    http, _, published = setup
    response = await http.post("/v1/audio/transcriptions", **upload("json"))
    assert response.status_code == 504
    assert response.headers["x-should-retry"] == "false"
    media_id = published[0].media_id
    assert f"GET /media/{media_id}" in response.json()["error"]


@pytest.mark.parametrize("setup", [{"transcription_wait_seconds": 30}], indirect=True)
async def test_a_language_the_model_cannot_do_is_400_with_the_pipelines_reason(
    setup: Setup,
) -> None:
    http, api, published = setup
    call = asyncio.create_task(http.post("/v1/audio/transcriptions", **upload("json")))
    await asyncio.wait_for(published.first.wait(), 30)
    chunk = published[0]
    failure = {"stage": "transcribe", "reason": "unsupported_language",
               "detail": "tiny.en transcribes English only, not de"}  # fmt: skip
    await asyncio.to_thread(api.index.ledger.fail, chunk.media_id, chunk.run, failure, None)
    response = await asyncio.wait_for(call, 30)
    assert response.status_code == 400
    assert (
        response.json()["error"] == "unsupported_language: tiny.en transcribes English only, not de"
    )


@pytest.mark.parametrize(
    ("data", "files", "message"),
    [
        ({"model": "whisper-1"}, None, "either a `file` or a `url`"),
        ({"model": "gpt-9"}, {"file": ("a.wav", b"x", "audio/wav")}, "unknown model"),
        ({"model": "whisper-1", "url": "file:///etc/passwd"}, None, "only http and https"),
    ],
)
async def test_bad_requests_are_400_or_422_with_a_reason(
    setup: Setup, data: dict[str, str], files: Any, message: str
) -> None:
    http, _, published = setup
    response = await http.post("/v1/audio/transcriptions", data=data, files=files)
    assert response.status_code in (400, 422)
    assert message in response.json()["error"]
    assert published == []


async def test_models_lists_the_configured_model_and_the_openai_alias(setup: Setup) -> None:
    listed = (await setup[0].get("/v1/models")).json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == {"bundled:tiny.en", "whisper-1"}


def test_verbose_json_gives_only_the_granularities_asked() -> None:
    words = [Word(start=0.0, end=0.5, word=" hi")]
    segments = [Segment(start=0.0, end=0.5, text=" hi", words=words)]
    only_words = json.loads(answer("verbose_json", {"word"}, "en", segments).body)
    assert "segments" not in only_words
    assert only_words["words"] == [{"word": "hi", "start": 0.0, "end": 0.5}]
    only_segments = json.loads(answer("verbose_json", {"segment"}, "en", segments).body)
    assert "words" not in only_segments
    assert only_segments["duration"] == 0.5

"""Media metadata (title, author, published, duration, webpage_url, thumbnail_url): read from
yt-dlp's probe or a file's tags, carried by the events, kept by the ledger, shown and filtered
on by the API and the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from typer.testing import CliRunner

from streamscribe.cli.main import app
from streamscribe.common.events import AudioChunk, MediaMetadata, MediaRequested, Transcript
from streamscribe.embed.store.ledger import Ledger
from streamscribe.ingest.chunk_source import MediaRef, publish_file
from streamscribe.ingest.metadata import from_file, from_probe, iso_date
from streamscribe.ingest.settings import IngestSection
from tests.api_server import ServedApi, api_on, serving
from tests.factories import transcript_chunk

TALK = MediaMetadata(
    title="The budget, explained",
    author="Ada Lovelace",
    published="2021-05-03",
    duration=1830.5,
    webpage_url="https://video.example.org/watch?v=1",
    thumbnail_url="https://video.example.org/1.jpg",
)
OLDER = MediaMetadata(title="Budget history", author="Charles Babbage", published="1999-12-31")
NO_BROKER = {"STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"}
WORDS = "the budget for next year sets aside money for schools roads and the new library"


def with_metadata(chunk: Transcript, metadata: MediaMetadata | None) -> Transcript:
    return chunk.model_copy(update={"metadata": metadata})


# --- the event -------------------------------------------------------------------------------


def test_bad_values_are_dropped_not_refused() -> None:
    metadata = MediaMetadata.model_validate(
        {"title": "  two\n words ", "published": "soon", "duration": -1,
         "webpage_url": "javascript:alert(1)", "thumbnail_url": "https://e.org/t.jpg",
         "rating": 5}
    )  # fmt: skip
    assert metadata == MediaMetadata(title="two words", thumbnail_url="https://e.org/t.jpg")
    assert MediaMetadata(title="x" * 9999).title == "x" * 500


def test_metadata_travels_in_version_1_and_older_events_still_parse() -> None:
    chunk = AudioChunk(
        media_id="m1", seq=0, start=0, end=1, source_url="u", audio=b"x", metadata=TALK
    )
    body = json.loads(chunk.model_dump_json(exclude_none=True))
    assert body["version"] == 1
    assert body["metadata"]["published"] == "2021-05-03"
    assert AudioChunk.model_validate(body).metadata == TALK
    del body["metadata"]
    assert AudioChunk.model_validate(body).metadata is None
    request = MediaRequested.model_validate_json(
        '{"url": "https://e.org/a", "metadata": {"title": "A"}}'
    )
    assert request.metadata == MediaMetadata(title="A")


def test_given_fields_win_and_the_others_fill_in() -> None:
    given = MediaMetadata(title="Mine")
    assert given.over(TALK) == replace_fields(TALK, title="Mine")
    assert MediaMetadata().over(None).empty


def replace_fields(metadata: MediaMetadata, **fields: Any) -> MediaMetadata:
    return metadata.model_copy(update=fields)


# --- ingest: the probe and a file's tags -----------------------------------------------------


def test_the_probe_gives_title_author_iso_date_duration_and_urls() -> None:
    info = {
        "title": "The budget, explained", "uploader": None, "channel": "Ada Lovelace",
        "upload_date": "20210503", "duration": 1830.5,
        "webpage_url": "https://video.example.org/watch?v=1",
        "thumbnail": "https://video.example.org/1.jpg", "formats": [],
    }  # fmt: skip
    assert from_probe(info) == TALK
    assert from_probe({"upload_date": "2021"}) == MediaMetadata()  # a year alone is no date


@pytest.mark.parametrize(
    ("raw", "iso"),
    [("20210503", "2021-05-03"), ("2021-05-03T10:00:00Z", "2021-05-03"), ("2021", None),
     ("20211399", None), (None, None)],
)  # fmt: skip
def test_dates_in_the_forms_sites_and_tags_write(raw: str | None, iso: str | None) -> None:
    day = iso_date(raw)
    assert (day.isoformat() if day else None) == iso


def tagged_ogg(path: Path, tags: dict[str, str], seconds: int = 1) -> Path:
    """`seconds` of a tone in Ogg/Opus, with `tags` (Ogg keeps them on the stream)."""
    tone = (np.sin(np.arange(960) * 2 * np.pi / 48) * 8000).astype(np.int16)
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.metadata.update(tags)
        for _ in range(50 * seconds):
            frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


async def test_a_files_tags_give_title_author_and_date(tmp_path: Path) -> None:
    tags = {"TITLE": "Town hall", "ARTIST": "City council", "DATE": "2024-02-29"}
    found = await from_file(tagged_ogg(tmp_path / "meeting-2024.ogg", tags))
    assert (found.title, found.author, str(found.published)) == (
        "Town hall", "City council", "2024-02-29"
    )  # fmt: skip
    assert found.duration == pytest.approx(1.0, abs=0.1)


async def test_a_file_without_tags_or_not_media_is_named_by_its_name(tmp_path: Path) -> None:
    plain = await from_file(tagged_ogg(tmp_path / "plain.ogg", {}))
    assert (plain.title, plain.author) == ("plain", None)
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"\x00not media" * 100)
    assert await from_file(junk) == MediaMetadata(title="notes")
    upload = await from_file(junk, name="Quarterly call.m4a")  # an upload's own name
    assert upload.title == "Quarterly call"


async def test_every_chunk_of_a_file_carries_its_tags_and_given_fields_win(
    tmp_path: Path,
) -> None:
    path = tagged_ogg(tmp_path / "talk.ogg", {"TITLE": "Town hall", "ARTIST": "Council"}, 8)
    sent: list[AudioChunk] = []

    async def send(chunk: AudioChunk) -> None:
        sent.append(chunk)

    section = IngestSection(chunk_min_seconds=2.0, chunk_max_seconds=3.0, overlap_seconds=0.0)
    media = MediaRef("f-1", "file:talk.ogg", metadata=MediaMetadata(author="Given"))
    count = await publish_file(path, media, section, send)
    assert count == len(sent) >= 2
    for chunk in sent:
        assert chunk.metadata is not None
        assert (chunk.metadata.title, chunk.metadata.author) == ("Town hall", "Given")


# --- transcribe: the transcript carries the chunk's metadata -----------------------------------


async def test_transcribe_copies_the_chunks_metadata_to_its_transcript(tmp_path: Path) -> None:
    from streamscribe.transcribe.batch import Batcher
    from streamscribe.transcribe.handlers import STAGE, Resources, router
    from streamscribe.transcribe.settings import TranscribeSettings
    from streamscribe.transcribe.transcriber import Transcription

    class Quiet:
        def check_language(self, language: str | None) -> None:
            pass

        def transcribe_chunk(self, chunk: AudioChunk, audio: Any) -> Transcription:
            return Transcription(language="en", segments=[])

    settings = TranscribeSettings(data_dir=tmp_path)
    broker = KafkaBroker()
    broker.include_router(router(settings))
    fake = Quiet()
    resources = Resources(fake, 60, Batcher(fake))  # type: ignore[arg-type]
    broker.context.set_global(STAGE, resources)
    seen: list[Transcript] = []

    @broker.subscriber(settings.topics.transcript, group_id="spy")
    async def spy(message: KafkaMessage) -> None:
        seen.append(Transcript.model_validate_json(message.body))

    audio = tagged_ogg(tmp_path / "chunk.ogg", {}).read_bytes()
    chunk = AudioChunk(
        media_id="m1", seq=0, start=0, end=1, source_url="u", audio=audio, metadata=TALK
    )
    try:
        async with TestKafkaBroker(broker) as running:
            await running.publish(chunk.model_dump_json().encode(), settings.topics.audio)
    finally:
        broker.context.reset_global(STAGE)
    assert [t.metadata for t in seen] == [TALK]


# --- the ledger --------------------------------------------------------------------------------


def test_the_ledger_keeps_each_field_known_and_shows_them_flat(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "db.sqlite")
    run = "1000000000000-a"
    ledger.request("m1", run, "https://e.org/a", metadata=MediaMetadata(title="Given"))
    ledger.store_chunk(with_metadata(transcript_chunk(0, 2), TALK.over(None)), passages=1)
    ledger.store_chunk(with_metadata(transcript_chunk(1, 2), None), passages=1)  # says nothing
    record = ledger.get("m1")
    assert record is not None
    shown = record.as_dict()
    assert {k: shown[k] for k in ("title", "author", "published", "duration")} == {
        "title": TALK.title, "author": "Ada Lovelace", "published": "2021-05-03",
        "duration": 1830.5,
    }  # fmt: skip
    assert (shown["webpage_url"], shown["thumbnail_url"]) == (
        TALK.webpage_url, TALK.thumbnail_url
    )  # fmt: skip
    assert record.metadata == TALK
    ledger.request("m1", "1000000000500-b", "https://e.org/a")  # a new run starts afresh
    renewed = ledger.get("m1")
    assert renewed is not None
    assert renewed.metadata is None


# --- the API: status, hits and filters -------------------------------------------------------


def library() -> list[Transcript]:
    """Three indexed media saying the same words: a talk (2021, Ada), an older one (1999,
    Babbage) and one with no metadata at all."""
    chunks = []
    for media_id, metadata in (("m-talk", TALK), ("m-old", OLDER), ("m-bare", None)):
        for seq in range(2):
            chunk = transcript_chunk(seq, 2, media_id=media_id, text=f"{WORDS} part {{seq}}")
            chunks.append(with_metadata(chunk, metadata))
    return chunks


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    api = api_on(tmp_path, KafkaBroker(), library())
    async with TestKafkaBroker(api.state.current.broker):
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
    api.close()


async def test_status_shows_the_metadata(http: httpx.AsyncClient) -> None:
    body = (await http.get("/media/m-talk")).json()
    assert TALK.model_dump(mode="json").items() <= body.items()
    bare = (await http.get("/media/m-bare")).json()
    assert (bare["title"], bare["published"]) == (None, None)


async def search(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/search", params={"q": "budget schools", "k": 10, **params})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


async def test_hits_carry_title_author_and_date(http: httpx.AsyncClient) -> None:
    hits = {hit["media_id"]: hit for hit in await search(http)}
    assert set(hits) == {"m-talk", "m-old", "m-bare"}
    talk = hits["m-talk"]
    assert (talk["title"], talk["author"], talk["published"]) == (
        TALK.title, "Ada Lovelace", "2021-05-03"
    )  # fmt: skip
    assert hits["m-bare"]["title"] is None


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
@pytest.mark.parametrize(
    ("filters", "media"),
    [
        ({"media": "m-old"}, {"m-old"}),
        ({"author": "ADA"}, {"m-talk"}),  # part of the name, any case
        ({"since": "2000-01-01"}, {"m-talk"}),
        ({"until": "2021-05-03"}, {"m-talk", "m-old"}),  # inclusive; undated left out
        ({"since": "1999-12-31", "until": "1999-12-31"}, {"m-old"}),
        ({"author": "babbage", "since": "2000-01-01"}, set()),
    ],
)
async def test_search_filters_keep_the_matching_media(
    http: httpx.AsyncClient, mode: str, filters: dict[str, str], media: set[str]
) -> None:
    hits = await search(http, mode=mode, **filters)
    assert {hit["media_id"] for hit in hits} == media
    assert len(hits) == 2 * len(media)  # every passage of theirs (2 each), none of the others
    if media:  # k counts the hits kept, not those ranked
        assert len(await search(http, mode=mode, k=1, **filters)) == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [({"since": "2021-02-30"}, 422), ({"media": "../x"}, 422),
     ({"since": "2022-01-01", "until": "2021-01-01"}, 400)],
)  # fmt: skip
async def test_bad_filters_are_refused(
    http: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    response = await http.get("/search", params={"q": "budget", **params})
    assert response.status_code == status
    assert response.json()["error"]


# --- the CLI at 80 columns -------------------------------------------------------------------


LONG_TEXT = " ".join(f"{WORDS} part {{seq}}" for _ in range(4))  # about 370 characters


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    chunks = [
        with_metadata(
            transcript_chunk(seq, 2, media_id=f"m-{name}0123456789abcdef", text=LONG_TEXT),
            metadata,
        )
        for seq in range(2)
        for name, metadata in (("talk", TALK), ("old", OLDER))
    ]
    api: ServedApi = api_on(tmp_path / "pipeline", KafkaBroker(), chunks)
    with serving(api) as url:
        yield {**NO_BROKER, "STREAMSCRIBE_DATA_DIR": str(tmp_path / "cli"),
               "STREAMSCRIBE_API_URL": url, "COLUMNS": "80"}  # fmt: skip
    api.close()


def text_rows(output: str) -> list[list[str]]:
    """The text column's lines of each row of a search table (the last column, from where its
    header starts; rows are apart by a blank line)."""
    lines = output.splitlines()
    header = next(line for line in lines if re.search(r"\btext\b", line))
    start = header.index("text")
    rows: list[list[str]] = [[]]
    for line in lines[lines.index(header) + 1 :]:
        if not line.strip():
            rows.append([])
        elif line[start:].strip(" ─"):  # not the rule under the header
            rows[-1].append(line[start:].strip())
    return [row for row in rows if row]


def test_search_at_80_columns_gives_the_text_the_width(served: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["search", "budget schools", "-k", "4"], env=served)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) <= 80
    rows = text_rows(result.output)
    assert len(rows) == 4
    for row in rows:
        passage = " ".join(row)
        assert passage.startswith(WORDS)  # the whole passage, unbroken words
        assert len(row) <= 3 * len(passage) / 100, row
    assert "m-talk012345…" in result.output  # ids shortened in the table
    assert "m-talk0123456789abcdef" not in result.output
    assert "The budget," in result.output
    assert "Ada Lovelace ·" in result.output
    as_json = CliRunner().invoke(app, ["search", "budget", "--json"], env=served)
    assert "m-talk0123456789abcdef" in as_json.output  # whole with --json


def test_search_options_filter(served: dict[str, str]) -> None:
    def found(*options: str) -> set[str]:
        result = CliRunner().invoke(app, ["search", "budget", "--json", *options], env=served)
        assert result.exit_code in (0, 1), result.output
        return (
            {hit["media_id"] for hit in json.loads(result.output)}
            if result.exit_code == 0
            else set()
        )

    assert found("--author", "babbage") == {"m-old0123456789abcdef"}
    assert found("--since", "2000-01-01") == {"m-talk0123456789abcdef"}
    assert found("--until", "2000-01-01") == {"m-old0123456789abcdef"}
    assert found("--media", "m-talk0123456789abcdef") == {"m-talk0123456789abcdef"}
    bad = CliRunner().invoke(app, ["search", "budget", "--since", "last week"], env=served)
    assert bad.exit_code == 2
    assert "not a date" in bad.output


def test_status_shows_titles_and_short_ids_at_80_columns(served: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["status"], env=served)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) <= 80
    assert "m-old0123456…" in result.output
    assert "Budget history" in result.output
    assert "Charles Babbage · 1999-12-31" in result.output
    one = json.loads(CliRunner().invoke(app, ["status", "m-old0123456789abcdef", "--json"],
                                        env=served).output)  # fmt: skip
    assert (one["media_id"], one["title"], one["published"]) == (
        "m-old0123456789abcdef", "Budget history", "1999-12-31"
    )  # fmt: skip

"""The page's HTML routes without a browser (tests/integration/test_page.py drives Chromium):
search answers in the HTML with the words marked, a media page has its player at the second
asked and the transcript, the library lists states and failures in words and submits, the key
form keeps a key in a session cookie the JSON routes take too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.api import page, page_view
from streamscribe.common.settings import TopicSettings
from tests.api_server import ServedApi, api_on
from tests.factories import transcript_chunk

ADMIN_KEY = "page-admin-key-0123456789abcdef"
LOOPBACK = ("127.0.0.1", 50000)


def _chunks() -> list[Any]:
    """m1 indexed (2 chunks), m2 half-way."""
    return [
        transcript_chunk(0, 2, media_id="m1", text="the budget talk begins"),
        transcript_chunk(1, 2, media_id="m1", text="budgets are cut again"),
        transcript_chunk(0, 2, media_id="m2", text="another story"),
    ]


@pytest.fixture
async def open_api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[Any], ServedApi]]:
    """No keys, a loopback client: the page needs no key form."""
    broker = KafkaBroker()
    published: list[Any] = []

    @broker.subscriber(TopicSettings().requested)
    async def requested(body: dict[str, Any]) -> None:
        published.append(body)

    api = api_on(tmp_path, broker, _chunks())
    api.index.ledger.fail(
        "m3", None, {"stage": "ingest", "reason": "too_long", "detail": "2 h > 1 h"}, "https://x/y"
    )
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app, client=LOOPBACK)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, published, api
    api.close()


async def test_search_answers_in_the_html_with_the_words_marked(open_api: Any) -> None:
    http = open_api[0]
    response = await http.get("/", params={"q": "budget cuts", "mode": "keyword"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<mark>budget</mark> talk" in html
    assert "<mark>budgets</mark> are" in html
    assert 'href="/watch/m1?t=1"' in html
    assert 'href="/watch/m1?t=31"' in html
    assert "00:31" in html
    assert 'name="mode"' in html
    assert '<option value="keyword" selected>' in html


async def test_search_without_a_query_is_the_form_alone(open_api: Any) -> None:
    html = (await open_api[0].get("/")).text
    assert 'role="search"' in html
    assert '<label for="q">' in html
    assert "<mark>" not in html
    assert 'class="hits"' not in html


async def test_the_media_page_has_the_player_at_the_second_and_the_transcript(
    open_api: Any,
) -> None:
    response = await open_api[0].get("/watch/m1", params={"t": "31"})
    assert response.status_code == 200
    html = response.text
    assert re.search(r'<audio id="player" controls preload="metadata" '
                     r'src="https://example.org/m1.mp3#t=31"', html)  # fmt: skip
    assert 'data-start="1.0"' in html
    assert 'data-start="31.0"' in html
    # the sentence at the second asked is the current one
    assert re.search(r'href="/watch/m1\?t=31"[^>]*aria-current="true"', html)
    for fmt in ("srt", "vtt", "json"):
        assert f'href="/media/m1/transcript?format={fmt}"' in html
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_a_local_file_has_no_player_and_says_so(open_api: Any) -> None:
    http, _, api = open_api
    api.index.ledger.request("m4", "r1", "file:///home/me/talk.mp3")
    html = (await http.get("/watch/m4")).text
    assert "<audio" not in html
    assert "<video" not in html
    assert "No player: this media came from a local file" in html
    assert (await http.get("/watch/nobody")).status_code == 404


def test_a_site_page_plays_on_the_site_at_the_second() -> None:
    player = page_view.player_for(
        "https://www.youtube.com/watch?v=abc", "https://www.youtube.com/watch?v=abc&t=3", 75.4
    )
    assert player == page_view.Player("site", "https://www.youtube.com/watch?v=abc&t=75")
    assert page_view.player_for("https://x.org/a.webm", None, 2).kind == "video"
    # a direct media URL plays in the page even where the probe names a page for it
    assert page_view.player_for("https://x.org/a.mp3", "https://x.org/a", 2).kind == "audio"
    assert page_view.player_for("upload:talk.mp3", None, 2).kind == "none"


async def test_the_library_lists_states_progress_and_failures_in_words(open_api: Any) -> None:
    html = (await open_api[0].get("/library")).text
    assert html.index('data-media-id="m3"') < html.index('data-media-id="m1"')  # newest first
    assert re.search(r'data-media-id="m1" data-state="indexed"', html)
    assert re.search(r'data-media-id="m2" data-state="transcribing"', html)
    assert '<progress max="2" value="2"' in html
    assert "1 of ? chunks" in html
    assert "The media is longer than this server accepts (ingest): 2 h &gt; 1 h" in html
    assert '<meta http-equiv="refresh"' in html  # m2 is still moving: reload without script


async def test_the_library_form_submits_and_redirects(open_api: Any) -> None:
    http, published, _ = open_api
    response = await http.post("/library", data={"url": "http://127.0.0.1:9/a.mp3"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/library?submitted=m-")
    assert [p["url"] for p in published] == ["http://127.0.0.1:9/a.mp3"]
    refused = await http.post("/library", data={"url": "file:///etc/passwd"})
    assert refused.status_code == 422
    assert "only http and https" in refused.text
    assert 'role="alert"' in refused.text


async def test_a_form_from_another_site_is_refused(open_api: Any) -> None:
    http, published, _ = open_api
    response = await http.post(
        "/library",
        data={"url": "http://127.0.0.1:9/a.mp3"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 422
    assert "another site" in response.text
    assert published == []


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, ServedApi]]:
    broker = KafkaBroker()
    api = api_on(tmp_path, broker, _chunks(), admin_key=ADMIN_KEY)
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app, client=LOOPBACK)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, api
    api.close()


async def test_with_keys_the_page_asks_for_one_and_keeps_it_in_a_session_cookie(
    keyed: Any,
) -> None:
    http = keyed[0]
    asked = await http.get("/library")
    assert asked.status_code == 401
    assert 'type="password"' in asked.text
    assert 'name="next" value="/library"' in asked.text
    wrong = await http.post("/key", data={"key": "not-a-key", "next": "/library"})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    given = await http.post("/key", data={"key": ADMIN_KEY, "next": "/library"})
    assert (given.status_code, given.headers["location"]) == (303, "/library")
    cookie = given.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "max-age" not in cookie
    assert (await http.get("/library")).status_code == 200
    assert (await http.get("/media/m1")).status_code == 200  # the JSON API takes it too
    forgotten = await http.post("/key/forget")
    assert forgotten.status_code == 303
    assert (await http.get("/library")).status_code == 401


async def test_the_key_form_goes_back_only_to_this_server(keyed: Any) -> None:
    given = await keyed[0].post("/key", data={"key": ADMIN_KEY, "next": "//evil.example/x"})
    assert given.headers["location"] == "/"


def test_marked_pieces_and_clock() -> None:
    assert page_view.marked("The Budget, budgets!", "the budget") == [
        ("The ", False), ("Budget", True), (", ", False), ("budgets", True), ("!", False)
    ]  # fmt: skip
    assert [page_view.clock(s) for s in (0, 65.9, 3725)] == ["00:00", "01:05", "1:02:05"]


async def test_the_page_stays_out_of_the_openapi_document(open_api: Any) -> None:
    paths = open_api[2].app.openapi()["paths"]
    assert not {"/", "/watch/{media_id}", "/library", "/key"} & set(paths)
    assert (await open_api[0].get("/static/page.js")).status_code == 200


def test_metadata_is_shown_where_the_records_carry_it() -> None:
    """Title, author, date and duration (the media metadata's fields) when present; the URL's
    file name or the media id when not."""
    hit = SimpleNamespace(
        media_id="m9", start=75.0, text="a budget", source_url="https://x.org/v",
        title="Budget hearing", author="City Council", published="2024-05-01",
    )  # fmt: skip
    html = page.TEMPLATES.get_template("search.html").render(
        q="budget", mode="hybrid", modes=["hybrid"], hits=[{"hit": hit, "parts": [("a", False)]}]
    )
    assert '>Budget hearing<span class="visually-hidden">, at 01:15</span></a>' in html
    assert "<span>City Council</span>" in html
    assert '<time datetime="2024-05-01">2024-05-01</time>' in html
    assert ">01:15</time>" in html
    media = SimpleNamespace(
        media_id="m9", state="indexed", source_url="https://x.org/v", failure=None,
        title="Budget hearing", author="City Council", published=None, duration=3725.0,
        language="en",
    )  # fmt: skip
    watch = page.TEMPLATES.get_template("watch.html").render(
        media=media, lines=[], current=None, start=0.0, player=page_view.Player("none")
    )
    assert "<h1>Budget hearing</h1>" in watch
    assert "1:02:05 long" in watch
    bare = SimpleNamespace(media_id="m-1", source_url=None)
    assert page_view.title_of(bare) == "m-1"


async def test_over_https_the_cookie_is_secure(keyed: Any) -> None:
    api = keyed[1]
    transport = httpx.ASGITransport(app=api.app, client=LOOPBACK)
    async with httpx.AsyncClient(transport=transport, base_url="https://api") as http:
        given = await http.post("/key", data={"key": ADMIN_KEY})
    assert "secure" in given.headers["set-cookie"].lower()

"""API keys with scopes on every route: the right 401/403/2xx for every route and every scope,
loopback-only without keys, the bootstrap admin key, revocation, the submission rate, and a
non-loopback bind with no key refused at start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from streamscribe.api.app import check_exposure
from streamscribe.api.auth import COOKIE
from streamscribe.common.errors import ConfigError
from streamscribe.common.vocabulary import SCOPES
from tests.api_server import ServedApi, api_on, api_settings
from tests.factories import transcript_chunk

ADMIN_KEY = "bootstrap-admin-key-0123456789"
# Every route, a request it serves, and the weakest scope that may make it. `{scope}` in a path
# keeps one caller's success (a forget, a key) from changing another's answer.
ROUTES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/media", "read", {}),
    ("GET", "/media/m1", "read", {}),
    ("GET", "/media/m1/transcript", "read", {}),
    ("GET", "/search", "read", {"params": {"q": "budget"}}),
    ("GET", "/v1/models", "read", {}),
    ("POST", "/media", "submit", {"json": {"url": "http://127.0.0.1:9/{scope}.mp3"}}),
    ("DELETE", "/media/del-{scope}", "submit", {}),
    ("POST", "/v1/audio/transcriptions", "submit", {"data": {"model": "whisper-1"}}),
    ("POST", "/keys", "admin", {"json": {"name": "new-{scope}", "scope": "read"}}),
    ("GET", "/keys", "admin", {}),
    ("DELETE", "/keys/old-{scope}", "admin", {}),
    # a topic that is not the pipeline's: refused before any broker is asked
    ("GET", "/dead-letters/nothing", "admin", {}),
    ("POST", "/dead-letters/nothing/replay", "admin", {}),
]
# what an allowed caller gets (the transcription without a file is refused past the key check)
ALLOWED = {
    "POST /media": 202,
    "POST /keys": 201,
    "POST /v1/audio/transcriptions": 400,
    "GET /dead-letters/nothing": 404,
    "POST /dead-letters/nothing/replay": 404,
}


def _chunks() -> list[Any]:
    media = ["m1", *(f"del-{scope}" for scope in SCOPES)]
    return [transcript_chunk(0, 1, media_id=m, text="budget talk") for m in media]


@pytest.fixture
async def keyed(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, ServedApi, dict[str, str]]]:
    broker = KafkaBroker()
    api = api_on(tmp_path, broker, _chunks())
    secrets = {scope: api.keys.create(f"k-{scope}", scope)[1] for scope in SCOPES}
    for scope in SCOPES:
        api.keys.create(f"old-{scope}", "read")
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, api, secrets
    api.close()


def _request(method: str, path: str, who: str, options: dict[str, Any]) -> dict[str, Any]:
    filled = {
        name: {k: v.format(scope=who) if isinstance(v, str) else v for k, v in value.items()}
        for name, value in options.items()
    }
    return {"method": method, "url": path.format(scope=who), **filled}


async def test_every_route_answers_401_403_or_serves_by_scope(
    keyed: tuple[httpx.AsyncClient, ServedApi, dict[str, str]],
) -> None:
    http, _, secrets = keyed
    seen = []
    for method, path, needed, options in ROUTES:
        anonymous = await http.request(**_request(method, path, "none", options))
        seen.append((method, path, "none", anonymous.status_code))
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"]
        for held in SCOPES:
            headers = {"Authorization": f"Bearer {secrets[held]}"}
            answer = await http.request(**_request(method, path, held, options), headers=headers)
            allowed = SCOPES.index(held) >= SCOPES.index(needed)
            expected = ALLOWED.get(f"{method} {path}", 200) if allowed else 403
            assert answer.status_code == expected, (method, path, held, answer.text)
            seen.append((method, path, held, answer.status_code))
    assert len(seen) == len(ROUTES) * 4


def test_the_table_covers_every_route_of_the_openapi_document(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker())
    document = api.app.openapi()
    api.close()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    table = {(method, _template(path)) for method, path, _, _ in ROUTES}
    assert documented == table


def _template(path: str) -> str:
    known = {
        "/media/m1": "/media/{media_id}",
        "/media/m1/transcript": "/media/{media_id}/transcript",
        "/media/del-{scope}": "/media/{media_id}",
        "/keys/old-{scope}": "/keys/{name}",
        "/dead-letters/nothing": "/dead-letters/{topic}",
        "/dead-letters/nothing/replay": "/dead-letters/{topic}/replay",
    }
    return known.get(path, path)


async def test_a_wrong_or_revoked_key_is_401_even_before_any_key_exists(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker(), _chunks())
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        wrong = await http.get("/media", headers={"Authorization": "Bearer ss_not-a-key"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        _, secret = api.keys.create("soon-gone", "admin")
        mine = {"Authorization": f"Bearer {secret}"}
        assert (await http.get("/keys", headers=mine)).status_code == 200
        assert (await http.delete("/keys/soon-gone", headers=mine)).status_code == 200
        revoked = await http.get("/media", headers=mine)
    api.close()
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]


async def test_without_keys_only_loopback_clients_are_served(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker(), _chunks())
    answers = {}
    for client in ("127.0.0.1", "::1", "10.0.0.7", "203.0.113.9"):
        transport = httpx.ASGITransport(app=api.app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            answers[client] = (await http.get("/media/m1")).status_code
    api.close()
    assert answers == {"127.0.0.1": 200, "::1": 200, "10.0.0.7": 401, "203.0.113.9": 401}


async def test_once_a_key_exists_loopback_needs_one_too(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker(), _chunks())
    api.keys.create("reader", "read")
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        status = (await http.get("/media/m1")).status_code
    api.close()
    assert status == 401


async def test_the_admin_key_from_the_settings_is_an_admin(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker(), admin_key=ADMIN_KEY)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        anonymous = await http.get("/keys")
        created = await http.post(
            "/keys",
            json={"name": "team", "scope": "submit"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    api.close()
    assert anonymous.status_code == 401  # a key exists (the settings' one): loopback needs one
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["scope"]) == ("team", "submit")
    assert body["key"].startswith("ss_")


async def test_the_page_s_session_cookie_carries_a_key_with_its_scope(tmp_path: Path) -> None:
    """What the key form sets (`/key`) is taken by every route, with the key's scope; a
    Bearer header wins over it; an unknown or revoked key in it is 401 as in the header."""
    api = api_on(tmp_path, KafkaBroker(), _chunks())
    _, reader = api.keys.create("reader", "read")
    _, admin = api.keys.create("boss", "admin")
    transport = httpx.ASGITransport(app=api.app)
    answers = {}
    for name, cookie, header in [
        ("reader", reader, None),
        ("admin", admin, None),
        ("unknown", "ss_not-a-key", None),
        ("header wins", admin, reader),
    ]:
        headers = {"Authorization": f"Bearer {header}"} if header else {}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", cookies={COOKIE: cookie}, headers=headers
        ) as http:
            answers[name] = ((await http.get("/media/m1")).status_code,
                             (await http.get("/keys")).status_code)  # fmt: skip
    api.keys.revoke("reader")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", cookies={COOKIE: reader}
    ) as http:
        revoked = await http.get("/media/m1")
    api.close()
    assert answers == {
        "reader": (200, 403),
        "admin": (200, 200),
        "unknown": (401, 401),
        "header wins": (200, 403),
    }
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["error"]


async def test_the_settings_admin_key_works_in_the_cookie_too(tmp_path: Path) -> None:
    api = api_on(tmp_path, KafkaBroker(), admin_key=ADMIN_KEY)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", cookies={COOKIE: ADMIN_KEY}
    ) as http:
        status = (await http.get("/keys")).status_code
    api.close()
    assert status == 200


async def test_submissions_past_the_rate_are_429_with_retry_after(tmp_path: Path) -> None:
    broker = KafkaBroker()
    api = api_on(tmp_path, broker, submit_per_minute=2)
    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            answers = [
                await http.post("/media", json={"url": f"http://127.0.0.1:9/{n}.mp3"})
                for n in range(3)
            ]
            reading = await http.get("/media")
    api.close()
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert "2 submissions in a minute" in answers[2].json()["error"]
    assert reading.status_code == 200  # the rate bounds submissions, not reads


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.7", "::"])
def test_a_public_bind_without_a_key_refuses_to_start_saying_what_to_set(
    tmp_path: Path, host: str
) -> None:
    settings = api_settings(tmp_path)
    settings.embed.http_host = host
    api = api_on(tmp_path, KafkaBroker())
    with pytest.raises(ConfigError) as refused:
        check_exposure(settings, api.keys)
    for name in ("STREAMSCRIBE_API__ADMIN_KEY", "STREAMSCRIBE_API__AUTH=none", "127.0.0.1"):
        assert name in str(refused.value)
    api.keys.create("ops", "admin")
    check_exposure(settings, api.keys)  # a stored key: it may start
    api.close()


def test_auth_none_is_allowed_anywhere_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings(tmp_path, auth="none")
    settings.embed.http_host = "0.0.0.0"
    api = api_on(tmp_path, KafkaBroker())
    with caplog.at_level(logging.WARNING):
        check_exposure(settings, api.keys)
    api.close()
    assert "authentication is off" in caplog.text

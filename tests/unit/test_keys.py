"""API keys on a real SQLite file: shown once, stored as a hash, scoped, revoked, shared."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from streamscribe.embed.store import keys as keys_module
from streamscribe.embed.store.keys import ApiKeys, KeyNameTakenError, allows
from streamscribe.embed.store.ledger import Ledger


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[ApiKeys]:
    opened = ApiKeys(tmp_path / "streamscribe.db")
    yield opened
    opened.close()


def test_a_created_key_verifies_and_only_its_hash_is_stored(keys: ApiKeys) -> None:
    record, secret = keys.create("ci", "submit")
    assert secret.startswith("ss_")
    assert len(secret) >= 40
    assert (record.name, record.scope, record.active) == ("ci", "submit", True)
    verified = keys.verify(secret)
    assert verified is not None
    assert (verified.id, verified.scope) == (record.id, "submit")
    assert verified.last_used_at is not None
    stored = str(apsw.Connection(str(keys.path)).execute("SELECT * FROM api_keys").fetchall())
    assert secret not in stored
    assert secret[3:] not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored


def test_unknown_and_malformed_keys_do_not_verify(keys: ApiKeys) -> None:
    _, secret = keys.create("ci", "read")
    for wrong in ("", "ss_", secret[:-1], secret + "x", "Bearer " + secret, "\udcff"):
        assert keys.verify(wrong) is None


def test_every_key_gets_its_own_secret_and_id(keys: ApiKeys) -> None:
    made = [keys.create(f"k{i}", "read") for i in range(5)]
    assert len({secret for _, secret in made}) == len({record.id for record, _ in made}) == 5


def test_names_are_unique_among_active_keys(keys: ApiKeys) -> None:
    first, _ = keys.create("deploy", "admin")
    with pytest.raises(KeyNameTakenError, match="revoke it first"):
        keys.create("deploy", "read")
    assert keys.revoke("deploy")
    second, secret = keys.create("deploy", "read")  # the name is free again
    assert second.id != first.id
    assert [(k.name, k.active) for k in keys.list()] == [("deploy", False), ("deploy", True)]
    assert keys.verify(secret) is not None


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "naïve"])
def test_bad_names_are_refused(keys: ApiKeys, name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        keys.create(name, "read")
    assert keys.list() == []


def test_a_bad_scope_is_refused(keys: ApiKeys) -> None:
    with pytest.raises(ValueError, match="read, submit, admin"):
        keys.create("x", "root")  # type: ignore[arg-type]


def test_a_revoked_key_no_longer_verifies(keys: ApiKeys) -> None:
    record, secret = keys.create("laptop", "read")
    _, other = keys.create("server", "read")
    assert keys.any_active()
    assert keys.revoke(record.id)  # by id
    assert not keys.revoke(record.id)  # already revoked
    assert not keys.revoke("nobody")
    assert keys.verify(secret) is None
    assert keys.verify(other) is not None
    assert keys.revoke("server")  # by name
    assert not keys.any_active()
    assert all(k.revoked_at is not None for k in keys.list())


def test_scopes_are_ordered() -> None:
    assert allows("admin", "read")
    assert allows("admin", "submit")
    assert allows("admin", "admin")
    assert allows("submit", "read")
    assert allows("submit", "submit")
    assert not allows("submit", "admin")
    assert allows("read", "read")
    assert not allows("read", "submit")
    assert not allows("read", "admin")


def test_last_use_is_written_at_most_once_a_resolution(
    keys: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, secret = keys.create("ci", "read")
    assert keys.list()[0].last_used_at is None
    first = keys.verify(secret)
    assert first is not None
    again = keys.verify(secret)
    assert again is not None
    assert again.last_used_at == first.last_used_at
    monkeypatch.setattr(keys_module, "LAST_USED_RESOLUTION_SECONDS", 0.0)
    later = keys.verify(secret)
    assert later is not None
    assert first.last_used_at is not None
    assert later.last_used_at is not None
    assert later.last_used_at >= first.last_used_at
    assert keys.list()[0].last_used_at == later.last_used_at


def test_the_public_view_has_no_secret_or_hash(keys: ApiKeys) -> None:
    record, secret = keys.create("ci", "admin")
    public = keys.list()[0].as_dict()
    assert set(public) == {"id", "name", "scope", "created_at", "last_used_at", "revoked_at"}
    assert public["id"] == record.id
    assert public["created_at"].endswith("Z")
    assert secret not in str(public)


def test_keys_live_beside_the_ledger_and_are_seen_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "streamscribe.db"
    ledger = Ledger(path)
    writer, reader = ApiKeys(path), ApiKeys(path)
    try:
        _, secret = writer.create("ci", "submit")
        assert reader.any_active()
        assert reader.verify(secret) is not None
        ledger.request("m1", "1000000000000-a", "u")
        assert ledger.get("m1") is not None
    finally:
        for opened in (writer, reader, ledger):
            opened.close()

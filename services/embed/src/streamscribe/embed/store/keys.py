"""API keys: the one writer of the `api_keys` table, in the ledger's SQLite database file.

A key is shown once, when it is created; the table keeps only its SHA-256. A plain hash, not a
slow password hash (scrypt, argon2): a key is 32 random bytes (256 bits) from `secrets`, so no
dictionary or brute force can find it from its hash, and every request verifies one, which a
deliberately slow hash would make cost tens of milliseconds.

Scopes are ordered: `admin` can do what `submit` can, `submit` what `read` can. A revoked key
stays listed (who had access, until when) and its name may be given to a new key.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import apsw

from streamscribe.common.vocabulary import SCOPES, Scope
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store import database

PREFIX = "ss_"
"""The start of every key: easy to spot in a leaked file or a secret scanner's rules."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LAST_USED_RESOLUTION_SECONDS = 60.0
"""`last_used_at` is written at most this often per key: verifying is on every request, and a
write per request would contend with the embed stage's writers for the database."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name)
    WHERE revoked_at IS NULL;
"""
_COLUMNS = "id, name, scope, hash, created_at, last_used_at, revoked_at"


class KeyNameTakenError(ValueError):
    """An active key already has this name."""


@dataclass(frozen=True)
class KeyRecord:
    """What is known of a key: never the key itself."""

    id: str
    name: str
    scope: Scope
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        """The public view of the key (for `keys list` and the admin routes)."""
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": database.iso(self.created_at),
            "last_used_at": database.iso(self.last_used_at),
            "revoked_at": database.iso(self.revoked_at),
        }


def allows(held: Scope, needed: Scope) -> bool:
    """Whether a key of scope `held` may do what needs `needed` (admin ⊇ submit ⊇ read)."""
    return SCOPES.index(held) >= SCOPES.index(needed)


class ApiKeys:
    """The keys in one SQLite file; safe to share between processes (WAL, BEGIN IMMEDIATE)."""

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self._db = database.connect(path, busy_timeout_ms)
        with database.write(self._db) as db:
            db.execute(SCHEMA)

    def create(self, name: str, scope: Scope) -> tuple[KeyRecord, str]:
        """A new key: its record and the key itself, which is shown this once and kept nowhere.
        Raises `KeyNameTakenError` when an active key has the name, ValueError on a bad name
        or scope."""
        _check(name, scope)
        secret = PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(f"key_{secrets.token_hex(6)}", name, scope, time.time(), None, None)
        with database.write(self._db) as db:
            if _active_named(db, name):
                raise KeyNameTakenError(
                    f"an active key is already named {name!r}: revoke it first or choose "
                    "another name"
                )
            db.execute(
                "INSERT INTO api_keys (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.id, name, scope, _digest(secret), record.created_at),
            )
        return record, secret

    def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones too, oldest first."""
        with database.failures("reading"):
            rows = database.rows(self._db, f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        return [_record(row) for row in rows]

    def revoke(self, name_or_id: str) -> bool:
        """Revoke the active key of this id or name; False when there is none."""
        with database.write(self._db) as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL "
                "AND (id = ? OR name = ?)",
                (time.time(), name_or_id, name_or_id),
            )
            return bool(db.changes())

    def verify(self, secret: str) -> KeyRecord | None:
        """The active key this secret is, or None (unknown, malformed or revoked)."""
        digest = _digest(secret)
        with database.failures("reading"):
            rows = database.rows(
                self._db,
                f"SELECT {_COLUMNS} FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
                (digest,),
            )
        # the lookup by hash reveals nothing through its timing that helps find a key (it
        # compares digests, not keys); compared again in constant time all the same
        if not rows or not hmac.compare_digest(str(rows[0][3]), digest):
            return None
        record = _record(rows[0])
        return self._touched(record)

    def any_active(self) -> bool:
        """Whether any key is active: then every request needs one."""
        with database.failures("reading"):
            rows = database.rows(
                self._db, "SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"
            )
        return bool(rows)

    def close(self) -> None:
        self._db.close()

    def _touched(self, record: KeyRecord) -> KeyRecord:
        """The record with `last_used_at` now, written when the stored one is old enough."""
        now = time.time()
        if record.last_used_at is not None and now - record.last_used_at < (
            LAST_USED_RESOLUTION_SECONDS
        ):
            return record
        with database.write(self._db) as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, record.id))
        return KeyRecord(
            record.id, record.name, record.scope, record.created_at, now, record.revoked_at
        )


def open_keys(settings: EmbedSettings) -> ApiKeys:
    """The keys in the configured database file, beside the ledger (`STREAMSCRIBE_SQLITE__PATH`)."""
    return ApiKeys(settings.database_path, settings.sqlite.busy_timeout_ms)


def _check(name: str, scope: str) -> None:
    if not NAME.match(name):
        raise ValueError(
            f"a key name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit: {name[:80]!r}"
        )
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")


def _active_named(db: apsw.Connection, name: str) -> bool:
    rows = database.rows(
        db, "SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)
    )
    return bool(rows)


def _digest(secret: str) -> str:
    # "replace": a header with characters UTF-8 cannot encode is only a key that matches none
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _record(row: Any) -> KeyRecord:
    key_id, name, scope, _hash, created, used, revoked = row
    return KeyRecord(key_id, name, cast(Scope, scope), created, used, revoked)

"""Opens the index the settings name (`STREAMSCRIBE_EMBED__STORE`), importing only that
backend's module."""

from __future__ import annotations

from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.base import VectorBackend
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import open_ledger


def open_vectors(settings: EmbedSettings, dimension: int) -> VectorBackend:
    """The configured backend; `dimension` is the embedding model's (a new Pinecone index, a
    new PostgreSQL table)."""
    if settings.embed.store == "pinecone":
        from streamscribe.embed.store.pinecone import PineconeVectors

        return PineconeVectors(
            settings.pinecone, dimension, control_host=settings.pinecone.control_host
        )
    if settings.embed.store == "postgres":
        from streamscribe.embed.store.postgres import PostgresVectors

        return PostgresVectors(settings.database, dimension)
    from streamscribe.embed.store.sqlite import SQLiteVectors

    return SQLiteVectors(settings.database_path, settings.sqlite.busy_timeout_ms)


def open_index(settings: EmbedSettings, dimension: int) -> Index:
    ledger = open_ledger(settings)
    try:
        return Index(ledger, open_vectors(settings, dimension))
    except BaseException:
        ledger.close()
        raise

"""The index: a ledger (`ledger.py`) and one vector backend per module (`sqlite.py`,
`pinecone.py`) behind `base.VectorBackend`. `open_index` picks the backend the settings name
(`STREAMSCRIBE_EMBED__STORE`), importing only that one."""

from __future__ import annotations

from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.base import VectorBackend
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.ledger import Ledger


def open_ledger(settings: EmbedSettings) -> Ledger:
    return Ledger(settings.database_path, settings.sqlite.busy_timeout_ms)


def open_vectors(settings: EmbedSettings, dimension: int) -> VectorBackend:
    """The configured backend; `dimension` is the embedding model's (a new Pinecone index)."""
    if settings.embed.store == "pinecone":
        from streamscribe.embed.store.pinecone import PineconeVectors

        return PineconeVectors(
            settings.pinecone, dimension, control_host=settings.pinecone.control_host
        )
    from streamscribe.embed.store.sqlite import SQLiteVectors

    return SQLiteVectors(settings.database_path, settings.sqlite.busy_timeout_ms)


def open_index(settings: EmbedSettings, dimension: int) -> Index:
    ledger = open_ledger(settings)
    try:
        return Index(ledger, open_vectors(settings, dimension))
    except BaseException:
        ledger.close()
        raise


__all__ = ["Index", "Ledger", "open_index", "open_ledger", "open_vectors"]

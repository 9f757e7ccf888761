"""Search the index: embed the query with the service's model, ask the store."""

from __future__ import annotations

from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store import Hit, open_store


def search(settings: EmbedSettings, query: str, k: int) -> list[Hit]:
    vector = load_embedder(settings.embed, settings.data_dir).embed([query])[0]
    store = open_store(settings)
    try:
        return store.search(vector, k)
    finally:
        store.close()

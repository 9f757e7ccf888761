"""Search the index: embed the query with the service's model (unless by keywords only), then
ask the configured vector backend, fused with keyword hits in hybrid mode."""

from __future__ import annotations

from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.base import Hit, SearchMode
from streamscribe.embed.store.factory import open_index
from streamscribe.embed.store.index import Index


def search(settings: EmbedSettings, query: str, k: int, mode: SearchMode) -> list[Hit]:
    vector = None
    dimension = 0  # keyword search reads no vector; only a new Pinecone index needs one
    if mode != "keyword":
        embedder = load_embedder(settings.embed, settings.data_dir)
        vector = embedder.embed([query])[0]
        dimension = embedder.dimension
    index: Index = open_index(settings, dimension)
    try:
        return index.search(query, vector, k, mode)
    finally:
        index.close()

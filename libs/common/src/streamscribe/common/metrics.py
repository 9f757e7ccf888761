"""Prometheus metrics every service exports on /metrics (process_* come from the default
collector). One process runs one service, so the metrics are process-wide, labelled by stage.

FastStream's Prometheus middleware adds its own, by handler (the topic) and service
(`app_name`): `streamscribe_received_messages_total`, `..._in_process` (handled, not yet
committed), `streamscribe_received_processed_messages_total` by status, `..._exceptions_total`,
`streamscribe_published_messages_*`. Ours stay where they say what FastStream cannot: the work
of a stage (chunks, audio seconds, failures by reason, retries, dead letters) and its handler's
time by stage with buckets up to half an hour (a download), without the retry releasers, whose
messages wait out their backoff."""

from __future__ import annotations

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

PEAK_RSS = Gauge("streamscribe_peak_resident_memory_bytes", "Highest RSS seen by this process.")
MEMORY_CEILING = Gauge("streamscribe_memory_ceiling_bytes", "Memory ceiling in force.")
MEMORY_PAUSED = Gauge(
    "streamscribe_memory_paused", "1 while consumption is paused because RSS is near the ceiling."
)
MODEL_LOAD_BYTES = Gauge(
    "streamscribe_model_load_bytes", "RSS growth caused by loading this process's models."
)
TEMP_FILES = Gauge("streamscribe_temp_files", "Files held in this process's temp dirs.")
TEMP_BYTES = Gauge("streamscribe_temp_bytes", "Bytes held in this process's temp dirs.")
CHUNKS = Counter("streamscribe_chunks", "Chunks processed.", ["stage"])
AUDIO_SECONDS = Counter("streamscribe_audio_seconds", "Seconds of audio processed.", ["stage"])
STAGE_SECONDS = Histogram(
    "streamscribe_stage_duration_seconds",
    "Time one message spends in a stage's handler.",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
FAILURES = Counter(
    "streamscribe_failures", "Media failed, by stage and reason.", ["stage", "reason"]
)
RETRIES = Counter("streamscribe_retries", "Messages scheduled for another attempt.", ["stage"])
DEAD_LETTERS = Counter(
    "streamscribe_dead_letters", "Messages sent to a dead-letter topic.", ["stage"]
)
CONSUMER_LAG = Gauge(
    "streamscribe_consumer_lag_messages", "Messages behind the end of the input topic.", ["topic"]
)
SPEECH_REDECODED_SECONDS = Counter(
    "streamscribe_speech_redecoded_seconds",
    "Seconds of speech (Silero VAD) that a chunk's decoding left without words, decoded again.",
)
SPEECH_UNCOVERED_SECONDS = Counter(
    "streamscribe_speech_uncovered_seconds",
    "Seconds of speech (Silero VAD) still without words after decoding them again.",
)
READY = Gauge("streamscribe_ready", "1 once the model is loaded and the consumer joined.")


def faststream_metrics(service: str) -> KafkaPrometheusMiddleware:
    """FastStream's Prometheus middleware for one service's broker (outermost: a message is
    in process until its outcome is committed)."""
    return KafkaPrometheusMiddleware(
        registry=REGISTRY, app_name=service, metrics_prefix="streamscribe"
    )

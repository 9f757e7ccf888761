"""Prometheus metrics every service exports on /metrics (process_* come from the default
collector). One process runs one service, so the metrics are process-wide, labelled by stage."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PEAK_RSS = Gauge("streamscribe_peak_resident_memory_bytes", "Highest RSS seen by this process.")
MEMORY_CEILING = Gauge("streamscribe_memory_ceiling_bytes", "Memory ceiling in force.")
MEMORY_PAUSED = Gauge(
    "streamscribe_memory_paused", "1 while consumption is paused because RSS is near the ceiling."
)
MODEL_LOAD_BYTES = Gauge(
    "streamscribe_model_load_bytes", "RSS growth caused by loading this service's model."
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
IN_FLIGHT = Gauge(
    "streamscribe_messages_in_flight", "Messages being handled (not yet committed).", ["stage"]
)
READY = Gauge("streamscribe_ready", "1 once the model is loaded and the consumer joined.")

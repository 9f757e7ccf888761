"""Keeping the memory-only embedded broker bounded: `up` restarts it with empty topics when the
pipeline is idle and the broker has grown (Tansu keeps every byte and ignores retention).

What the topics hold that matters survives: outcomes are in the ledger, unfinished media are
requested again (`resume.py`), and dead letters not yet replayed are carried over to the new
broker. What does not: the record of past events on the topics (`media.indexed`, …) and
replayed dead letters; with Apache Kafka none of this runs, and retention does the job.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from faststream.kafka import KafkaBroker
from prometheus_client.parser import text_string_to_metric_families

from streamscribe.common.dead_letters import (
    REPLAY_GROUP,
    DeadLetter,
    dlq_consumer,
    drain,
    letter_of,
)
from streamscribe.common.settings import CommonSettings

BUSY_METRICS = ("streamscribe_received_messages_in_process", "streamscribe_consumer_lag_messages")


@dataclass(frozen=True)
class KeptLetter:
    topic: str
    letter: DeadLetter


def broker_rss(pid: int) -> int:
    """The resident memory of a process, from /proc (Linux: where the embedded broker runs)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def busy(metrics_url: str) -> bool:
    """Whether a worker has a message in hand or waiting in its input topics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name in BUSY_METRICS and any(s.value > 0 for s in family.samples):
            return True
    return False


async def keep_dead_letters(settings: CommonSettings) -> list[KeptLetter]:
    """The dead letters not replayed yet (past the replay group's offset), topic by topic."""
    kept: list[KeptLetter] = []
    for topic in (name for name in settings.topics.all() if name.endswith(".dlq")):
        consumer = dlq_consumer(settings, topic, settings.topics.name(REPLAY_GROUP))
        await consumer.start()
        try:
            kept += [KeptLetter(topic, letter_of(record)) for record in await drain(consumer)]
        finally:
            await consumer.stop()
    return kept


async def restore_dead_letters(broker: KafkaBroker, kept: list[KeptLetter]) -> None:
    for each in kept:
        letter = each.letter
        await broker.publish(letter.body, each.topic, key=letter.key, headers=letter.headers)

"""A worker on the service skeleton whose handler leaks memory on `…/leak` URLs, for
test_memory_guard: `python -m tests.integration.leaky_worker <bootstrap> <topic> <group>`.
Its ceiling is its RSS at start plus `HEADROOM`; one leak holds more than that."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from faststream.kafka import KafkaBroker

from streamscribe.common.consumer import Stage
from streamscribe.common.events import MediaRequested
from streamscribe.common.memory import rss
from streamscribe.common.service import Service, build_app, run
from streamscribe.common.settings import (
    CommonSettings,
    KafkaSettings,
    MemorySettings,
    ServiceSection,
)

HEADROOM = 192 * 2**20
LEAK = 320 * 2**20
PAGE = 4096


def touched(size: int) -> bytearray:
    """`size` bytes that are really resident: every page written."""
    block = bytearray(size)
    block[::PAGE] = b"\x01" * len(range(0, size, PAGE))
    return block


def main(bootstrap: str, topic: str, group: str) -> None:
    memory = MemorySettings(ceiling_bytes=rss() + HEADROOM, sample_seconds=0.1)
    settings = CommonSettings(kafka=KafkaSettings(bootstrap_servers=bootstrap), memory=memory)
    stage = Stage(settings, "leaky")
    leaked: list[bytearray] = []

    async def work(event: MediaRequested) -> None:
        print(f"handling {event.url}", flush=True)
        if event.url.endswith("/leak"):
            leaked.append(touched(LEAK))

    stage.subscribe(topic, group, work)

    @asynccontextmanager
    async def nothing(broker: KafkaBroker) -> AsyncIterator[Mapping[str, object]]:
        yield {}

    app = build_app(settings, "leaky", Service("leaky", stage.router, nothing))
    run(app, ServiceSection(http_port=0), "INFO")


if __name__ == "__main__":
    main(*sys.argv[1:4])

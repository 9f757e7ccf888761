"""The embedded broker's drain marker, shared by `up` and ingest.

Recycling the memory-only broker when it is idle bounds it only if the pipeline ever idles; under
a steady stream of media it never does. So past a harder size `up` drains instead: it writes this
marker, ingest starts no new media while it exists (their requests stay unfinished in the ledger),
the work in flight finishes, `up` recycles the broker, removes the marker and requests the waiting
media again. On Apache Kafka nothing writes the marker.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "embedded-broker.draining"


def marker(data_dir: Path) -> Path:
    return data_dir / MARKER


def draining(data_dir: Path) -> bool:
    """Whether `up` is draining the embedded broker that holds `data_dir`'s pipeline."""
    return marker(data_dir).exists()

"""The section of `make bench-api`, from docs/bench/api.json."""

from __future__ import annotations

import statistics
from typing import Any

from bench.sections.common import conditions, ok, table

HEADING = "## Search through the HTTP API (make bench-api)"
TARGET_SECONDS = 0.5


def _row(name: str, seconds: list[float]) -> list[str]:
    p90 = statistics.quantiles(seconds, n=10)[-1]
    return [
        name,
        f"{statistics.median(seconds) * 1000:.0f} ms",
        f"{p90 * 1000:.0f} ms",
        f"{min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f} ms",
    ]


def render(results: dict[str, Any]) -> str:
    s, f = results["settings"], results["figures"]
    median = statistics.median(f["command_seconds"])
    index = f"{f['passages']} passages"
    rows = [
        _row(f'`streamscribe search "…" --json`, whole process, index of {index}',
             f["command_seconds"]),
        _row(f"`GET /search` alone (embed embeds the query, searches, answers), index of {index}",
             f["request_seconds"]),
    ]  # fmt: skip
    target = [
        f"`search` under {TARGET_SECONDS:g} s median, on an index of {index}",
        f"{median * 1000:.0f} ms",
        ok(median < TARGET_SECONDS),
    ]
    return "\n".join(
        [
            HEADING,
            "",
            f"Made by `{s['command']}`. {conditions(results)} 1-minute load average "
            f"{f['load_when_timing']:.2f} when timing. A stack ({s['stack']}) with "
            f"{s['minutes']:g} minutes of speech indexed: an index of {index} only, not the "
            "200 000 of bench-index; the figures are the process and request overhead around a "
            f"search of a small index. {s['queries']} different queries, {s['mode']} search, "
            f"k={s['k']}.",
            "",
            *table(["what", "median", "p90", "range"], rows),
            "",
            *table(["target", "measured", "met"], [target]),
            "",
        ]
    )

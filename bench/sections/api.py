"""The section of `make bench-api`, from docs/bench/api.json."""

from __future__ import annotations

import statistics
from typing import Any

from bench.sections.common import conditions, ok, table

HEADING = "## Search through the HTTP API (make bench-api)"
TARGET_SECONDS = 0.5
TARGET_RATIO = 1.3


def _row(name: str, seconds: list[float]) -> list[str]:
    p90 = statistics.quantiles(seconds, n=10, method="inclusive")[-1]  # within the range
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
    targets = [target, *_upload_target(f)]
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
            *_upload_rows(f),
            *table(["target", "measured", "met"], targets),
            "",
        ]
    )


def _upload_rows(f: dict[str, Any]) -> list[str]:
    """`submit FILE --wait` against OpenAI's endpoint on the same file (older results lack it)."""
    if "transcriptions_seconds" not in f:
        return []
    seconds = f["upload_seconds_of_audio"]
    rows = [
        _row(f"`submit FILE --wait`, {seconds:g} s of speech", f["submit_wait_seconds"]),
        _row("`POST /v1/audio/transcriptions`, the same file", f["transcriptions_seconds"]),
    ]
    return [*table(["what", "median", "p90", "range"], rows), ""]


def _upload_target(f: dict[str, Any]) -> list[list[str]]:
    if "transcriptions_seconds" not in f:
        return []
    ratio = statistics.median(f["transcriptions_seconds"]) / statistics.median(
        f["submit_wait_seconds"]
    )
    return [[f"transcriptions within {TARGET_RATIO:g}x of `submit --wait`", f"{ratio:.2f}x",
             ok(ratio <= TARGET_RATIO)]]  # fmt: skip

"""`make bench-api`: `streamscribe search` against a running stack, whole command (process start,
imports, one HTTP request to embed, whose model stays loaded), and the same query's request
alone. Two minutes of speech are indexed first. Replaces its own section of docs/benchmarks.md.
Target: `search` under 0.5 s median."""

from __future__ import annotations

import statistics
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.integration.speech import SENTENCES

from bench.index import load_average, machine, wait_for_quiet, wall
from bench.media import speech_of_minutes
from bench.report import write_section
from bench.stack import STREAMSCRIBE, MediaServer, Stack

OUT = Path("bench/out")
DOCS = Path("docs/benchmarks.md")
HEADING = "## Search through the HTTP API (make bench-api)"
RUNS = 21
TARGET_SECONDS = 0.5


@dataclass(frozen=True)
class Timings:
    command: list[float]
    request: list[float]
    load: float
    passages: int


def measure() -> Timings:
    media = speech_of_minutes(2, OUT)
    with MediaServer(OUT) as server, Stack(OUT) as stack:
        media_id, _ = stack.submit_wait(server.url(media))
        passages = int(stack.status(media_id)["passages"])
        api = f"http://127.0.0.1:{stack.ports['embed']}"
        queries = [SENTENCES[i % len(SENTENCES)] for i in range(RUNS)]
        wait_for_quiet(limit=2.0, patience=120)  # a shared machine: wait a little, say the load
        load = load_average()
        command = [wall([STREAMSCRIBE, "search", q, "--json"], stack.env)[0] for q in queries]
        request = [_request(api, q) for q in queries]
    return Timings(command, request, load, passages)


def _request(api: str, query: str) -> float:
    url = f"{api}/search?{urllib.parse.urlencode({'q': query, 'k': 5})}"
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.monotonic() - started


def render(t: Timings) -> str:
    def row(name: str, seconds: list[float]) -> str:
        cuts = statistics.quantiles(seconds, n=10)
        return (
            f"| {name} | {statistics.median(seconds) * 1000:.0f} ms | {cuts[-1] * 1000:.0f} ms "
            f"| {min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f} ms |"
        )

    median = statistics.median(t.command)
    verdict = "met" if median < TARGET_SECONDS else "NOT met"
    return "\n".join(
        [
            HEADING,
            "",
            f"{machine()}; 1-min load average {t.load:.1f} when timing. A stack from "
            "`streamscribe up` (embedded broker, default settings) with 2 minutes of speech "
            f"indexed ({t.passages} passages); {RUNS} different queries, hybrid search, k=5.",
            "",
            "| what | median | p90 | range |",
            "|---|---|---|---|",
            row('`streamscribe search "…" --json`, whole process', t.command),
            row("`GET /search` alone (embed embeds the query, searches, answers)", t.request),
            "",
            f"Target: `search` under {TARGET_SECONDS:g} s median: {verdict}. Before the HTTP "
            "API, the CLI loaded the embedding model itself: 1.9 s median.",
            "",
        ]
    )


def main() -> None:
    timings = measure()
    write_section(DOCS, HEADING, render(timings))
    print(render(timings))


if __name__ == "__main__":
    main()

"""`make bench-api`: `streamscribe search` against a running stack, whole command (process start,
imports, one HTTP request to embed, whose model stays loaded), and the same query's request
alone. Two minutes of speech are indexed first: the index is small (its passages are counted in
the results); bench-index measures search on 200 000 passages. Writes docs/bench/api.json and
re-renders docs/benchmarks.md. Target: `search` under 0.5 s median."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

from tests.integration.speech import SENTENCES

from bench import render, results
from bench.index import wait_for_quiet, wall
from bench.media import speech_of_minutes
from bench.stack import STREAMSCRIBE, MediaServer, Stack

OUT = Path("bench/out")
MINUTES = 2
RUNS = 21
K = 5


def measure() -> dict[str, object]:
    media = speech_of_minutes(MINUTES, OUT)
    with MediaServer(OUT) as server, Stack(OUT) as stack:
        media_id, _ = stack.submit_wait(server.url(media))
        passages = int(stack.status(media_id)["passages"])
        api = f"http://127.0.0.1:{stack.ports['embed']}"
        queries = [SENTENCES[i % len(SENTENCES)] for i in range(RUNS)]
        wait_for_quiet(limit=2.0, patience=120)  # a shared machine: wait a little, say the load
        load = results.load_average()
        command = [wall([STREAMSCRIBE, "search", q, "--json"], stack.env)[0] for q in queries]
        request = [_request(api, q) for q in queries]
    return {
        "passages": passages,
        "load_when_timing": load,
        "command_seconds": command,
        "request_seconds": request,
    }


def _request(api: str, query: str) -> float:
    url = f"{api}/search?{urllib.parse.urlencode({'q': query, 'k': K})}"
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.monotonic() - started


def main() -> None:
    settings = {"command": "make bench-api", "minutes": MINUTES, "queries": RUNS, "k": K,
                "mode": "hybrid", "stack": "streamscribe up, default settings"}  # fmt: skip
    run = results.started(settings)
    results.finish("api", run, measure())
    render.main()


if __name__ == "__main__":
    main()

"""`make bench-api`: `streamscribe search` against a running stack, whole command (process start,
imports, one HTTP request to embed, whose model stays loaded), and the same query's request
alone. Two minutes of speech are indexed first: the index is small (its passages are counted in
the results); bench-index measures search on 200 000 passages. Writes docs/bench/api.json and
re-renders docs/benchmarks.md. Target: `search` under 0.5 s median.

Then OpenAI's `POST /v1/audio/transcriptions` of a one-minute file against `submit FILE --wait`
on the same stack and file, taking turns (each a new run of the same media). Target: within
1.3x."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
from tests.integration.speech import SENTENCES

from bench import render, results
from bench.index import wait_for_quiet, wall
from bench.media import speech_of_minutes
from bench.stack import STREAMSCRIBE, MediaServer, Stack

OUT = Path("bench/out")
MINUTES = 2
RUNS = 21
K = 5
UPLOAD_MINUTES = 1
UPLOAD_ROUNDS = 3


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
        upload = speech_of_minutes(UPLOAD_MINUTES, OUT)
        submitted, openai = _transcriptions_against_submit(stack, api, upload)
    return {
        "passages": passages,
        "load_when_timing": load,
        "command_seconds": command,
        "request_seconds": request,
        "upload_seconds_of_audio": UPLOAD_MINUTES * 60,
        "submit_wait_seconds": submitted,
        "transcriptions_seconds": openai,
    }


def _transcriptions_against_submit(
    stack: Stack, api: str, upload: Path
) -> tuple[list[float], list[float]]:
    """Wall seconds of `submit FILE --wait` and of the OpenAI endpoint, taking turns."""
    submitted, answered = [], []
    for _ in range(UPLOAD_ROUNDS):
        submitted.append(stack.submit_wait(str(upload))[1])
        started = time.monotonic()
        with upload.open("rb") as audio:
            response = httpx.post(
                f"{api}/v1/audio/transcriptions",
                data={"model": "whisper-1", "response_format": "json"},
                files={"file": (upload.name, audio, "audio/flac")},
                timeout=1200,
            )
        response.raise_for_status()
        answered.append(time.monotonic() - started)
    return submitted, answered


def _request(api: str, query: str) -> float:
    url = f"{api}/search?{urllib.parse.urlencode({'q': query, 'k': K})}"
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.monotonic() - started


def main() -> None:
    settings = {"command": "make bench-api", "minutes": MINUTES, "queries": RUNS, "k": K,
                "mode": "hybrid", "stack": "streamscribe up, default settings",
                "upload_rounds": UPLOAD_ROUNDS}  # fmt: skip
    run = results.started(settings)
    results.finish("api", run, measure())
    render.main()


if __name__ == "__main__":
    main()

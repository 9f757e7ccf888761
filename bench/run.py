"""`make bench` (`python -m bench.run [--long]`): peak RSS per service per media length and
transcription throughput, beside the naive baselines on the same input in the same run; writes
docs/bench/run.json and re-renders docs/benchmarks.md.

Steps, each on fresh processes: generated speech of 1, 10 and 60 minutes (180 with --long)
through the whole pipeline (lean embed backend) plus `streamscribe submit FILE`; the torch embed
backend on the 10-minute media; ingest downloading a file of over 1 GB; a soak of 200 short
media. The transcribers compared on one file are `make bench-transcribe`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import apsw

from bench import render, results
from bench.media import big_wav, speech_of_minutes
from bench.peaks import run_measured
from bench.sections.pipeline import ALONE, DECODER
from bench.stack import STREAMSCRIBE, MediaServer, Stack
from streamscribe.cli.supervisor import WORKER_MALLOC

OUT = Path("bench/out")
THREADS = 2


SUBMIT_PREFIX = "bench-submit."  # topics nothing in the pipeline consumes
# the baselines get the environment `up` gives the pipeline's workers: the same conditions
BASELINE_ENV = {**os.environ, **WORKER_MALLOC}
SOAK_MEDIA = 200  # short media in a row; transcribe's RSS after the 20th and after the last


@dataclass
class Row:
    minutes: float
    peaks: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0  # what transcribe alone transcribed
    busy_seconds: float = 0.0  # transcribe alone's stage time: decode chunk, transcribe, publish
    submit_seconds: float = 0.0  # `submit FILE`, whole: decode the file, cut, encode, publish
    pipeline_seconds: float = 0.0  # the whole pipeline on the same cores, end to end
    naive_audio_seconds: float = 0.0
    naive_seconds: float = 0.0  # transcribe(path): decodes the file inside its clock
    batched_seconds: float = 0.0  # faster-whisper's BatchedInferencePipeline, batch 8


def _passages(stack: Stack, media_id: str, path: Path) -> Path:
    """The passage texts of a media, in order, read from the stack's SQLite database (read-only:
    the workers still have it open, in WAL mode)."""
    database = apsw.Connection(str(stack.data / "streamscribe.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = database.execute(
            "SELECT text FROM passages WHERE media_id = ? ORDER BY seq, idx", (media_id,)
        ).fetchall()
    finally:
        database.close()
    path.write_text(json.dumps([str(row[0]) for row in rows]))
    return path


def measure_length(minutes: float, server: MediaServer) -> Row:
    media = speech_of_minutes(minutes, OUT)
    row = Row(minutes)
    with Stack(OUT) as stack:
        media_id, wall = stack.submit_wait(server.url(media))
        row.peaks = stack.peaks()
        row.pipeline_seconds = wall
        submit = run_measured(
            [STREAMSCRIBE, "submit", str(media)],
            env={**stack.env, "STREAMSCRIBE_TOPICS__PREFIX": SUBMIT_PREFIX},
        )
        row.peaks["submit FILE"] = submit.peak_bytes
        row.peaks[DECODER] = submit.tree_peak_bytes
        row.submit_seconds = submit.seconds
        chunks = stack.status(media_id)["chunks"]["total"]
        row.audio_seconds, row.busy_seconds, row.peaks[ALONE] = stack.transcribe_alone(
            SUBMIT_PREFIX, chunks
        )
        passages = _passages(stack, media_id, OUT / f"passages-{minutes:g}.json")
    naive = run_measured([sys.executable, "-m", "bench.baselines", "whisper", str(media),
                          str(THREADS)], env=BASELINE_ENV)  # fmt: skip
    result = json.loads(naive.stdout)
    row.peaks["naive whisper"] = naive.peak_bytes
    row.naive_audio_seconds, row.naive_seconds = result["audio_seconds"], result["seconds"]
    batched = run_measured([sys.executable, "-m", "bench.baselines", "batched", str(media),
                            str(THREADS)], env=BASELINE_ENV)  # fmt: skip
    row.peaks["batched whisper"] = batched.peak_bytes
    result = json.loads(batched.stdout)
    row.batched_seconds = result["seconds"]
    st = run_measured(
        [sys.executable, "-m", "bench.baselines", "embed", str(passages)], env=BASELINE_ENV
    )
    row.peaks["naive sentence-transformers"] = st.peak_bytes
    return row


def measure_torch_embed(server: MediaServer) -> int:
    media = speech_of_minutes(10, OUT)
    with Stack(OUT, STREAMSCRIBE_EMBED__BACKEND="torch") as stack:
        stack.submit_wait(server.url(media))
        return stack.peaks()["embed"]


def measure_big_download(server: MediaServer) -> tuple[int, int]:
    """Ingest's peak while it downloads and chunks a file of over 1 GB (not waiting for the
    transcripts: only ingest is measured here)."""
    media = big_wav(OUT)
    with Stack(OUT, STREAMSCRIBE_INGEST__MAX_DOWNLOAD_BYTES=str(4 * 10**9)) as stack:
        submitted = stack.cli("submit", server.url(media))
        _until_ingest_published(stack, submitted.stdout.strip(), deadline=3600)
        return stack.peaks()["ingest"], media.stat().st_size


INGEST_CHUNKS = 'streamscribe_chunks_total{stage="ingest"}'
INGEST_IN_FLIGHT = 'streamscribe_received_messages_in_process{app_name="ingest"'


def _until_ingest_published(
    stack: Stack, media_id: str, deadline: float, quiet: float = 10
) -> None:
    """Wait until ingest has published the media's chunks: its chunk counter has stopped growing
    for `quiet` seconds and it holds no message (its in-flight gauge is 0). The ledger cannot
    tell: it counts chunks stored by embed, not chunks published by ingest."""
    give_up = time.monotonic() + deadline
    last, since = -1.0, time.monotonic()
    while time.monotonic() < give_up:
        chunks = stack.metric("ingest", INGEST_CHUNKS)
        if chunks != last:
            last, since = chunks, time.monotonic()
        settled = time.monotonic() - since >= quiet
        if settled and chunks > 0 and stack.metric("ingest", INGEST_IN_FLIGHT) == 0:
            return
        status = stack.status(media_id)
        if status.get("state") == "failed":
            raise RuntimeError(f"{media_id} failed: {status.get('failure')}")
        time.sleep(2)
    raise RuntimeError(f"ingest did not finish publishing {media_id} in {deadline:.0f}s")


def measure_soak(server: MediaServer, count: int) -> tuple[int, int]:
    """Transcribe RSS after the 20th and after the last of `count` short media in a row."""
    media = speech_of_minutes(0.1, OUT)
    with Stack(OUT) as stack:
        worker = stack.workers()["transcribe"]
        rss_at: dict[int, int] = {}
        for i in range(count):
            stack.cli("submit", f"{server.url(media)}?n={i}")
        deadline = time.monotonic() + 3600
        while len(rss_at) < 2 and time.monotonic() < deadline:
            done = int(stack.metric("transcribe", 'streamscribe_chunks_total{stage="transcribe"}'))
            for mark in (20, count):
                if done >= mark and mark not in rss_at:
                    rss_at[mark] = worker.memory_info().rss
            time.sleep(0.2)
        return rss_at[20], rss_at[count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--long", action="store_true", help="add the 180-minute media")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lengths = [1, 10, 60] + ([180] if args.long else [])
    command = "make bench" + (" BENCH_ARGS=--long" if args.long else "")
    settings = {"command": command, "minutes": lengths, "threads": THREADS,
                "model": "tiny.en int8", "embed": "all-MiniLM-L6-v2, lean ONNX int8 backend",
                "soak_media": SOAK_MEDIA, "environment": WORKER_MALLOC}  # fmt: skip
    run = results.started(settings)
    with MediaServer(OUT) as server:
        rows = [asdict(measure_length(minutes, server)) for minutes in lengths]
        torch_embed = measure_torch_embed(server)
        big_peak, big_bytes = measure_big_download(server)
        soak = measure_soak(server, SOAK_MEDIA)
    figures = {
        "lengths": rows, "torch_embed_peak_bytes": torch_embed,
        "big_download": {"peak_bytes": big_peak, "bytes": big_bytes},
        "soak": {"after_20th": soak[0], "after_last": soak[1]},
    }  # fmt: skip
    results.finish("run", run, figures)
    render.main()


if __name__ == "__main__":
    main()

"""`make bench-transcribe` (`python -m bench.transcribers [--minutes 3]`): this pipeline's
transcriber (batch 1, 4 and 8) beside faster-whisper's `transcribe(path)` and
`BatchedInferencePipeline` (batch 8), each also with word times (the work this transcriber
does), on the same file and threads, in one run: audio seconds per second, peak RSS, WER
against the known text.

The file is held-out style speech: paragraphs that open with an ordinal ("First,", "Second,"
...) after a pause, the sentences of the test suite in turn, as long as asked. Each system runs
in its own process (`bench.baselines`), so its peak RSS is its own, and every process gets the
same environment: the malloc settings `up` gives its workers. The pipeline's chunks are cut
before its clock starts (ingest's work, another process in the pipeline); the cut is timed apart.
Writes docs/bench/transcribers.json and re-renders docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import jiwer
from tests.integration.speech import SENTENCES, make_speech, words

from bench import render, results
from bench.peaks import run_measured
from bench.sections.transcribers import SYSTEMS
from streamscribe.cli.supervisor import WORKER_MALLOC

OUT = Path("bench/out")
THREADS = 2
ORDINALS = [
    "First", "Second", "Third", "Fourth", "Fifth",
    "Sixth", "Seventh", "Eighth", "Ninth", "Tenth",
]  # fmt: skip
# about 5.6 s of espeak speech and pause per paragraph
PARAGRAPH_SECONDS = 5.6
# rounds of all the systems, interleaved; the best throughput of each is reported
ROUNDS = 2


def held_out_speech(minutes: float, out: Path) -> tuple[Path, str]:
    """Ordinal paragraphs of about `minutes` (cached), and their text."""
    count = max(1, round(minutes * 60 / PARAGRAPH_SECONDS))
    paragraphs = [
        f"{ORDINALS[i % 10]}, {SENTENCES[i % len(SENTENCES)].lower()}" for i in range(count)
    ]
    name = f"held-out-{count}"
    path = out / f"{name}.wav"
    if not path.exists():
        make_speech(out, paragraphs, name)
    return path, " ".join(paragraphs)


def compare(media: Path, text: str, threads: int, rounds: int) -> list[list[dict[str, Any]]]:
    """Each system `rounds` times, the systems interleaved so that a slow spell of the machine
    weighs on all of them; every run is kept."""
    truth = words(text)
    return [[_run(key, media, truth, threads) for key in SYSTEMS] for _ in range(rounds)]


def _run(key: str, media: Path, truth: str, threads: int) -> dict[str, Any]:
    kind, *extra = SYSTEMS[key]["args"]
    # the same environment for every system: the one `up` gives its workers
    env = {**os.environ, **WORKER_MALLOC, "STREAMSCRIBE_DATA_DIR": str(OUT / "data")}
    command = [sys.executable, "-m", "bench.baselines", kind, str(media), str(threads), *extra]
    measured = run_measured(command, env=env)
    if measured.returncode != 0:
        raise RuntimeError(f"{key} failed with exit code {measured.returncode}")
    out = json.loads(measured.stdout.strip().splitlines()[-1])
    return {
        "system": key,
        "seconds": float(out["seconds"]),
        "cut_seconds": out.get("cut_seconds"),
        "audio_seconds": float(out["audio_seconds"]),
        "peak_bytes": measured.peak_bytes,
        "wer": jiwer.wer(truth, words(str(out["text"]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    media, text = held_out_speech(args.minutes, OUT)
    settings = {
        "command": f"make bench-transcribe MINUTES={args.minutes:g}",
        "minutes": args.minutes,
        "rounds": args.rounds,
        "threads": THREADS,
        "model": "tiny.en int8",
        "beam": 5,
        "environment": WORKER_MALLOC,
    }
    run = results.started(settings)
    figures = {"runs": compare(media, text, THREADS, args.rounds)}
    results.finish("transcribers", run, figures)
    render.main()


if __name__ == "__main__":
    main()

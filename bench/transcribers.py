"""`make bench-transcribe` (`python -m bench.transcribers [--minutes 3]`): this pipeline's
transcriber (batch 1, 4 and 8) beside faster-whisper's `transcribe(path)` and
`BatchedInferencePipeline` (batch 8), each also with word times (the work this transcriber
does), on the same file and threads, in one run: audio seconds per second, peak RSS, WER
against the known text. `make bench` runs it too, on its 10-minute length.

The file is held-out style speech: paragraphs that open with an ordinal ("First,", "Second,"
...) after a pause, the sentences of the test suite in turn, as long as asked. Each system runs
in its own process (`bench.baselines`), so its peak RSS is its own; the pipeline's chunks are cut
before its clock starts (ingest's work, another process in the pipeline). Replaces its own
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import jiwer
from tests.integration.speech import SENTENCES, make_speech, words

from bench.peaks import run_measured
from bench.report import write_section
from streamscribe.cli.supervisor import WORKER_MALLOC

OUT = Path("bench/out")
THREADS = 2
HEADING = "## Transcribers on one file"
ORDINALS = [
    "First", "Second", "Third", "Fourth", "Fifth",
    "Sixth", "Seventh", "Eighth", "Ninth", "Tenth",
]  # fmt: skip
# about 5.6 s of espeak speech and pause per paragraph
PARAGRAPH_SECONDS = 5.6
# (key, name, bench.baselines arguments after MEDIA THREADS)
SYSTEMS = [
    ("ours 1", "this pipeline's transcriber, batch 1", ["ours", "1"]),
    ("ours 4", "this pipeline's transcriber, batch 4", ["ours", "4"]),
    ("ours 8", "this pipeline's transcriber, batch 8", ["ours", "8"]),
    ("whisper", "`transcribe(path)`", ["whisper"]),
    ("batched", "`BatchedInferencePipeline`, batch 8", ["batched"]),
    # This pipeline's transcriber gives word times (subtitles, search hits start at the word):
    # the anchors doing the same work.
    ("whisper words", "`transcribe(path)`, word times", ["whisper", "words"]),
    ("batched words", "`BatchedInferencePipeline`, batch 8, word times", ["batched", "words"]),
]
# rounds of all the systems, interleaved; the best throughput of each is reported
ROUNDS = 2
# the WER target: the better baseline plus this
WER_MARGIN = 0.01


@dataclass(frozen=True)
class Result:
    key: str
    name: str
    audio_per_s: float
    peak_bytes: int
    wer: float


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


def compare(media: Path, text: str, threads: int = THREADS, rounds: int = ROUNDS) -> list[Result]:
    """Each system `rounds` times, the systems interleaved so that a slow spell of the machine
    weighs on all of them: the best throughput of each, its largest peak, and the WER of its
    fastest run."""
    truth = words(text)
    runs = [[_run(system, media, truth, threads) for system in SYSTEMS] for _ in range(rounds)]
    best = []
    for measured in zip(*runs, strict=True):
        fastest = max(measured, key=lambda r: r.audio_per_s)
        peak = max(r.peak_bytes for r in measured)
        best.append(Result(fastest.key, fastest.name, fastest.audio_per_s, peak, fastest.wer))
    return best


def _run(system: tuple[str, str, list[str]], media: Path, truth: str, threads: int) -> Result:
    key, name, (kind, *extra) = system
    env = {**os.environ, "STREAMSCRIBE_DATA_DIR": str(OUT / "data")}
    if kind == "ours":
        env |= WORKER_MALLOC  # as `up` gives its workers
    command = [sys.executable, "-m", "bench.baselines", kind, str(media), str(threads), *extra]
    measured = run_measured(command, env=env)
    if measured.returncode != 0:
        raise RuntimeError(f"{name} failed with exit code {measured.returncode}")
    out = json.loads(measured.stdout.strip().splitlines()[-1])
    wer = jiwer.wer(truth, words(str(out["text"])))
    speed = float(out["audio_seconds"]) / float(out["seconds"])
    return Result(key, name, speed, measured.peak_bytes, wer)


def render(results: list[Result], minutes: float, command: str, rounds: int = ROUNDS) -> str:
    lines = [
        HEADING,
        "",
        f"Made by `{command}`: {minutes:g} minutes of held-out style speech (ordinal paragraphs "
        f"after pauses), tiny.en int8, {THREADS} threads, beam 5, each system in its own process,"
        f" {rounds} interleaved rounds; this pipeline's transcriber with the malloc settings `up` "
        "gives its workers. Audio seconds per second of transcription (the best "
        "round; this pipeline's chunks cut before the clock), peak RSS in MB (the largest), WER "
        "against the known text (of the best round).",
        "",
        "| system | audio s per s | peak RSS | WER |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.audio_per_s:.1f} | {r.peak_bytes / 1e6:.0f} | {r.wer:.3f} |"
        for r in results
    ]
    return "\n".join([*lines, "", *targets(results)]) + "\n"


def targets(results: list[Result]) -> list[str]:
    """The issue's targets for one transcribe worker, against the anchors of the same run: the
    fastest batch against the batched pipeline (its default, and with word times as this
    transcriber gives them), the batch sizes whose peak is at most half of the batched
    pipeline's, and the WER against the better baseline."""
    by = {r.key: r for r in results}
    ours = [r for r in results if r.key.startswith("ours")]
    fastest = max(ours, key=lambda r: r.audio_per_s)
    batched, half = by["batched"], by["batched"].peak_bytes / 2
    lean = [r for r in ours if r.peak_bytes <= half]
    lean_best = max(lean, key=lambda r: r.audio_per_s) if lean else None
    bar = min(by["whisper"].wer, batched.wer) + WER_MARGIN
    rows = [
        _target(
            f"throughput ≥ `BatchedInferencePipeline` ({batched.audio_per_s:.1f})",
            f"{fastest.audio_per_s:.1f}, {fastest.name}",
            fastest.audio_per_s >= batched.audio_per_s,
        ),
        _target(
            f"throughput ≥ it with word times ({by['batched words'].audio_per_s:.1f})",
            f"{fastest.audio_per_s:.1f}",
            fastest.audio_per_s >= by["batched words"].audio_per_s,
        ),
        _target(
            f"peak ≤ half of its {batched.peak_bytes / 1e6:.0f} MB",
            (
                f"{lean_best.peak_bytes / 1e6:.0f} MB at {lean_best.audio_per_s:.1f}, "
                f"{lean_best.name}"
                if lean_best
                else f"none: batch 1 {by['ours 1'].peak_bytes / 1e6:.0f} MB"
            ),
            lean_best is not None,
        ),
        _target(
            f"WER ≤ the better baseline + {WER_MARGIN} ({bar:.3f})",
            f"{fastest.wer:.3f}",
            fastest.wer <= bar,
        ),
    ]
    return ["| target | measured | met |", "|---|---|---|", *rows]


def _target(target: str, measured: str, met: bool) -> str:
    return f"| {target} | {measured} | {'✅' if met else '❌'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    media, text = held_out_speech(args.minutes, OUT)
    results = compare(media, text, rounds=args.rounds)
    command = f"make bench-transcribe MINUTES={args.minutes:g}"
    section = render(results, args.minutes, command, args.rounds)
    write_section(args.out, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

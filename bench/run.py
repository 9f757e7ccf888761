"""`make bench` (`python -m bench.run [--long]`): peak RSS per service per media length and
transcription throughput, beside the naive baselines on the same input in the same run; writes
docs/benchmarks.md.

Steps, each on fresh processes: generated speech of 1, 10 and 60 minutes (180 with --long)
through the whole pipeline (lean embed backend) plus `streamscribe submit FILE`; the torch embed
backend on the 10-minute media; ingest downloading a file of over 1 GB; a soak of 200 short media;
then the transcribers compared on 10 minutes of held-out style speech (`bench.transcribers`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import apsw

from bench import transcribers
from bench.media import big_wav, speech_of_minutes
from bench.peaks import run_measured
from bench.report import write_section
from bench.stack import STREAMSCRIBE, MediaServer, Stack

MB = 1_000_000
OUT = Path("bench/out")
THREADS = 2
DECODER = "decoder child of submit FILE"
ALONE = "transcribe alone"
SUBMIT_PREFIX = "bench-submit."  # topics nothing in the pipeline consumes
TRANSCRIBERS_MINUTES = 10  # the transcribers compared on one file (bench.transcribers)


@dataclass
class Row:
    minutes: float
    peaks: dict[str, int] = field(default_factory=dict)
    ours_audio_per_s: float = 0.0  # transcribe alone, per busy second
    pipeline_audio_per_s: float = 0.0  # the whole pipeline on the same cores, end to end
    naive_audio_per_s: float = 0.0
    batched_audio_per_s: float = 0.0  # faster-whisper's BatchedInferencePipeline, batch 8


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
        row.pipeline_audio_per_s = minutes * 60 / wall
        submit = run_measured(
            [STREAMSCRIBE, "submit", str(media)],
            env={**stack.env, "STREAMSCRIBE_TOPICS__PREFIX": SUBMIT_PREFIX},
        )
        row.peaks["submit FILE"] = submit.peak_bytes
        row.peaks[DECODER] = submit.tree_peak_bytes
        chunks = stack.status(media_id)["chunks"]["total"]
        audio, busy, row.peaks[ALONE] = stack.transcribe_alone(SUBMIT_PREFIX, chunks)
        row.ours_audio_per_s = audio / busy
        passages = _passages(stack, media_id, OUT / f"passages-{minutes:g}.json")
    naive = run_measured([sys.executable, "-m", "bench.baselines", "whisper", str(media),
                          str(THREADS)])  # fmt: skip
    result = json.loads(naive.stdout)
    row.peaks["naive whisper"] = naive.peak_bytes
    row.naive_audio_per_s = result["audio_seconds"] / result["seconds"]
    batched = run_measured([sys.executable, "-m", "bench.baselines", "batched", str(media),
                            str(THREADS)])  # fmt: skip
    row.peaks["batched whisper"] = batched.peak_bytes
    result = json.loads(batched.stdout)
    row.batched_audio_per_s = result["audio_seconds"] / result["seconds"]
    st = run_measured([sys.executable, "-m", "bench.baselines", "embed", str(passages)])
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


def measure_soak(server: MediaServer, count: int = 200) -> tuple[int, int]:
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


TARGETS = {"transcribe": 350 * MB, "ingest": 150 * MB, "embed": 250 * MB, "submit FILE": 120 * MB}


def render(rows: list[Row], torch_embed: int, big: tuple[int, int], soak: tuple[int, int],
           command: str) -> str:  # fmt: skip
    def mb(value: int) -> str:
        return f"{value / MB:.0f}"

    def ok(passed: bool) -> str:
        return "✅" if passed else "❌"

    lines = [
        "# Benchmarks",
        "",
        f"Made by `{command}` on this machine (2 cores, no GPU), tiny.en int8, {THREADS} threads,",
        f"all-MiniLM-L6-v2 (lean ONNX int8 backend unless noted), {time.strftime('%Y-%m-%d')}.",
        "Peak RSS is the kernel's high-water mark (VmHWM / rusage) of each process, in MB.",
        "",
        "| media | ingest | transcribe | transcribe alone | embed (lean) | submit FILE "
        "| its decoder child | naive whisper | batched whisper | naive sentence-transformers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p = row.peaks
        lines.append(
            f"| {row.minutes:g} min | {mb(p['ingest'])} | {mb(p['transcribe'])} "
            f"| {mb(p[ALONE])} | {mb(p['embed'])} | {mb(p['submit FILE'])} | {mb(p[DECODER])} "
            f"| {mb(p['naive whisper'])} | {mb(p['batched whisper'])} "
            f"| {mb(p['naive sentence-transformers'])} |"
        )
    lines += [
        "",
        "Audio seconds per second. *Transcribe alone*: one transcribe worker with both cores, fed "
        "the chunks `submit FILE` published, per second it was busy (decode, transcribe, publish)."
        " *Naive*: faster-whisper `transcribe(path)` on the whole file, same threads. *Batched*: "
        "faster-whisper's `BatchedInferencePipeline`, batch 8, same threads. *Pipeline*: "
        "the media through all three services sharing the two cores, end to end.",
        "",
        "| media | transcribe alone | naive | ratio | batched | pipeline |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.minutes:g} min | {row.ours_audio_per_s:.1f} | {row.naive_audio_per_s:.1f} "
            f"| {row.ours_audio_per_s / row.naive_audio_per_s:.2f} "
            f"| {row.batched_audio_per_s:.1f} | {row.pipeline_audio_per_s:.1f} |"
        )
    first, last = rows[0].peaks["transcribe"], rows[-1].peaks["transcribe"]
    transcribe_worst = max(r.peaks[name] for r in rows for name in ("transcribe", ALONE))
    ratios = [r.ours_audio_per_s / r.naive_audio_per_s for r in rows]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, limit in TARGETS.items():
        worst = transcribe_worst if name == "transcribe" else max(r.peaks[name] for r in rows)
        lines.append(f"| {name} ≤ {mb(limit)} MB | {mb(worst)} MB | {ok(worst <= limit)} |")
    lines += [
        f"| transcribe {rows[-1].minutes:g}-min peak within 10% of {rows[0].minutes:g}-min "
        f"| {last / first:.3f}x | {ok(last <= first * 1.1)} |",
        f"| embed, torch backend ≤ 600 MB (10 min) | {mb(torch_embed)} MB "
        f"| {ok(torch_embed <= 600 * MB)} |",
        f"| ingest ≤ 150 MB downloading {big[1] / 1e9:.2f} GB | {mb(big[0])} MB "
        f"| {ok(big[0] <= 150 * MB)} |",
        f"| transcription throughput ≥ 0.95x naive | {min(ratios):.2f}x (worst length) "
        f"| {ok(min(ratios) >= 0.95)} |",
        f"| soak: transcribe RSS after 200th within 10% of after 20th | {mb(soak[0])} → "
        f"{mb(soak[1])} MB | {ok(soak[1] <= soak[0] * 1.1)} |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--long", action="store_true", help="add the 180-minute media")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lengths = [1, 10, 60] + ([180] if args.long else [])
    with MediaServer(OUT) as server:
        rows = [measure_length(minutes, server) for minutes in lengths]
        torch_embed = measure_torch_embed(server)
        big = measure_big_download(server)
        soak = measure_soak(server)
    command = "make bench" + (" BENCH_ARGS=--long" if args.long else "")
    report = render(rows, torch_embed, big, soak, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + _other_sections(args.out))
    print(report)
    media, text = transcribers.held_out_speech(TRANSCRIBERS_MINUTES, OUT)
    section = transcribers.render(
        transcribers.compare(media, text), TRANSCRIBERS_MINUTES, "make bench"
    )
    write_section(args.out, transcribers.HEADING, section)
    print(section)


def _other_sections(path: Path) -> str:
    """The `## ` sections other benchmarks (bench-index, bench-box) wrote: kept as they are."""
    if not path.exists():
        return ""
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    return "\n" + "\n".join(lines[starts[0] :]) + "\n" if starts else ""


if __name__ == "__main__":
    main()

"""The section of `make bench-scale`, from docs/bench/scale.json."""

from __future__ import annotations

from typing import Any

from bench.sections.common import conditions, mb, ok, table

HEADING = "## Scale-out: transcribe workers sharing one media (make bench-scale)"
TARGET = 1.5  # two 1-thread workers against one


def best(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per configuration, its fastest round: the configurations alternate, so a burst of other
    work on the machine slows one round of one configuration, not all rounds of it."""
    return [min(runs, key=lambda r: r["seconds"]) for runs in zip(*rounds, strict=True)]


def _cpu(cpu: dict[str, Any]) -> str:
    if cpu["cgroup"] is None:
        return "CPU weighting: none"
    return f"CPU weighting: cgroup `{cpu['cgroup']}`, cpu.shares {cpu['shares']} (others: 1024)"


def _row(r: dict[str, Any], base: float, audio: float) -> list[str]:
    workers = r["per_worker"]
    return [
        f"{r['workers']} x {r['threads']} thread{'s' if r['threads'] > 1 else ''}",
        f"{r['seconds']:.0f} s",
        f"{audio / r['seconds']:.1f}",
        f"{base / r['seconds']:.2f}x",
        " / ".join(str(w["chunks"]) for w in workers),
        f"{r['transcripts']} ({r['transcribed_seconds'] / 60:.1f} min, {r['words']} words)",
        " / ".join(mb(w["peak_bytes"]) for w in workers),
    ]


def render(results: dict[str, Any]) -> str:
    s, f = results["settings"], results["figures"]
    media, rounds = f["media"], f["rounds"]
    runs = best(rounds)
    audio = media["audio_seconds"]
    two = next(r for r in runs if (r["workers"], r["threads"]) == (2, 1))
    speedup = runs[0]["seconds"] / two["seconds"]
    spread = ", ".join(f"{p}: {n}" for p, n in media["partitions"].items())
    header = ["transcribe", "wall time", "audio s per s", "speed-up", "chunks per worker",
              "transcripts (their audio, words)", "peak RSS per worker (MB)"]  # fmt: skip
    return "\n".join(
        [
            HEADING,
            "",
            f"Made by `{s['command']}`. {conditions(results)} {_cpu(s['cpu'])}. Each "
            f"configuration's best of {len(rounds)} alternating rounds. One {s['minutes']:g}-minute"
            f" media of generated speech: {media['chunks']} chunks in media.audio covering "
            f"{audio / 60:.1f} minutes ({s['partitions']} partitions; chunks per partition "
            f"{spread}). Transcribe only (Whisper {s['model']}, beam {s['beam']}), fresh worker "
            "processes per configuration, all in one consumer group. Audio seconds per second: "
            "the chunks' audio over the wall time from the first chunk sent to the last "
            "transcribed.",
            "",
            *table(header, [_row(r, runs[0]["seconds"], audio) for r in runs]),
            "",
            f"- Two 1-thread workers against one: {speedup:.2f}x (target ≥ {TARGET}x) "
            f"{ok(speedup >= TARGET)}",
            f"- Both workers took chunks of the same media: "
            f"{ok(all(w['chunks'] > 0 for w in two['per_worker']))}",
            "",
        ]
    )

"""The section of `make bench` (bench/run.py), from docs/bench/run.json."""

from __future__ import annotations

from typing import Any

from bench.sections.common import MB, conditions, mb, ok, table

HEADING = "## Pipeline (make bench)"
DECODER = "decoder child of submit FILE"
ALONE = "transcribe alone"
PEAKS = {
    "ingest": "ingest", "transcribe": "transcribe", ALONE: "transcribe alone",
    "embed": "embed (lean)", "submit FILE": "submit FILE",
    DECODER: "submit FILE or its decoder child, the larger (rusage)",
    "naive whisper": "naive whisper", "batched whisper": "batched whisper",
    "naive sentence-transformers": "naive sentence-transformers",
}  # fmt: skip
THROUGHPUT = ["media", "transcribe alone", "file to text", "naive", "ratio", "batched", "pipeline"]
TARGETS = {"transcribe": 350 * MB, "ingest": 150 * MB, "embed": 250 * MB, "submit FILE": 120 * MB}


def _speeds(r: dict[str, Any]) -> dict[str, float]:
    """Audio seconds per second. `file to text` adds submit FILE's whole run (decode the file,
    cut, encode, publish) to transcribe alone's busy time: the work transcribe(path) does
    inside its clock (decode the file, transcribe)."""
    audio = r["audio_seconds"]
    return {
        "alone": audio / r["busy_seconds"],
        "file to text": audio / (r["busy_seconds"] + r["submit_seconds"]),
        "naive": r["naive_audio_seconds"] / r["naive_seconds"],
        "batched": r["naive_audio_seconds"] / r["batched_seconds"],
        "pipeline": r["minutes"] * 60 / r["pipeline_seconds"],
    }


def _throughput(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        v = _speeds(r)
        out.append([f"{r['minutes']:g} min", f"{v['alone']:.1f}", f"{v['file to text']:.1f}",
                    f"{v['naive']:.1f}", f"{v['file to text'] / v['naive']:.2f}",
                    f"{v['batched']:.1f}", f"{v['pipeline']:.1f}"])  # fmt: skip
    return out


def _targets(f: dict[str, Any]) -> list[list[str]]:
    rows, out = f["lengths"], []
    for name, limit in TARGETS.items():
        names = (name, ALONE) if name == "transcribe" else (name,)
        worst = max(r["peaks"][n] for r in rows for n in names)
        out.append([f"{name} ≤ {mb(limit)} MB", f"{mb(worst)} MB", ok(worst <= limit)])
    first, last = rows[0]["peaks"]["transcribe"], rows[-1]["peaks"]["transcribe"]
    ratio = min(_speeds(r)["file to text"] / _speeds(r)["naive"] for r in rows)
    big, soak, torch = f["big_download"], f["soak"], f["torch_embed_peak_bytes"]
    out += [
        [f"transcribe {rows[-1]['minutes']:g}-min peak within 10% of {rows[0]['minutes']:g}-min",
         f"{last / first:.3f}x", ok(last <= first * 1.1)],
        ["embed, torch backend ≤ 600 MB (10 min)", f"{mb(torch)} MB", ok(torch <= 600 * MB)],
        [f"ingest ≤ 150 MB downloading {big['bytes'] / 1e9:.2f} GB", f"{mb(big['peak_bytes'])} MB",
         ok(big["peak_bytes"] <= 150 * MB)],
        ["transcription throughput, file to text, ≥ 0.95x naive", f"{ratio:.2f}x (worst length)",
         ok(ratio >= 0.95)],
        ["soak: transcribe RSS after the last within 10% of after the 20th",
         f"{mb(soak['after_20th'])} → {mb(soak['after_last'])} MB",
         ok(soak["after_last"] <= soak["after_20th"] * 1.1)],
    ]  # fmt: skip
    return out


def render(results: dict[str, Any]) -> str:
    s, f = results["settings"], results["figures"]
    rows = f["lengths"]
    peaks = [[f"{r['minutes']:g} min", *(mb(r["peaks"][k]) for k in PEAKS)] for r in rows]
    return "\n".join(
        [
            HEADING,
            "",
            f"Made by `{s['command']}`. {conditions(results)} Whisper {s['model']}, "
            f"{s['threads']} threads; {s['embed']} unless noted. The pipeline's workers and the "
            "naive baselines ran with the same malloc settings (the ones `up` gives its "
            "workers): "
            + ", ".join(f"`{k}={v}`" for k, v in s["environment"].items())
            + ". Peak RSS in MB:",
            "",
            *table(["media", *PEAKS.values()], peaks),
            "",
            "Audio seconds per second. *Transcribe alone*: one transcribe worker with the cores "
            "to itself, fed the chunks `submit FILE` published, per second it was busy (decode "
            "the chunk, transcribe, publish): its clock leaves out cutting the file. *File to "
            "text*: the same audio over transcribe alone's busy time plus `submit FILE`'s whole "
            "run (process start, decode the file, cut, encode, publish), the work `transcribe"
            "(path)` does inside its clock; the ratio is file to text over naive. *Naive*: "
            "faster-whisper `transcribe(path)` on the whole file, same threads. *Batched*: its "
            "`BatchedInferencePipeline`, batch 8. *Pipeline*: the media by URL through all "
            "three services sharing the cores, end to end.",
            "",
            *table(THROUGHPUT, _throughput(rows)),
            "",
            *table(["target", "measured", "met"], _targets(f)),
            "",
        ]
    )

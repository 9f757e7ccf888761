"""The int8 copy of the bundled Whisper model: it transcribes exactly as CTranslate2's on-load
quantization does, is written once, rebuilt when partial, and once by workers starting together."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import decode_audio

from streamscribe.transcribe import int8_model
from streamscribe.transcribe.int8_model import (
    MANIFEST_FILE,
    MODEL_FILE,
    ensure_int8,
    is_complete,
    read_model,
)
from streamscribe.transcribe.settings import TranscribeSection
from streamscribe.transcribe.transcriber import Transcriber, resolve_model
from tests.integration.speech import SENTENCES, make_speech

pytestmark = pytest.mark.integration


@pytest.fixture
def bundled() -> Path:
    return Path(resolve_model(TranscribeSection()))


@pytest.fixture
def audio(tmp_path: Path) -> np.ndarray:
    speech = make_speech(tmp_path, SENTENCES[:3])  # ~15 s: one window
    samples: np.ndarray = decode_audio(str(speech.path))
    return samples


def test_the_copy_transcribes_as_on_load_quantization(
    tmp_path: Path, bundled: Path, audio: np.ndarray
) -> None:
    section = TranscribeSection()
    copy = Path(resolve_model(section, tmp_path))
    assert copy == tmp_path / "models" / "tiny.en-int8"
    variables = {v.name: v for v in read_model(copy / MODEL_FILE).variables}
    weights = [v for v in variables.values() if v.is_weight and "conv" not in v.name]
    assert {v.dtype for v in weights} == {"int8"}
    assert all(variables[f"{v.name}_scale"].dtype == "float32" for v in weights)

    on_load, from_copy = Transcriber(section), Transcriber(section, tmp_path)
    expected = on_load.transcribe(audio, 0.0, None)
    assert expected.segments  # the speech was heard
    assert from_copy.transcribe(audio, 0.0, None) == expected  # text and times
    # the same weights, not merely close ones: the encoder's output is the same to the bit
    features = on_load.model.feature_extractor(audio)[:, :3000]
    assert np.array_equal(
        np.array(on_load.model.encode(features)), np.array(from_copy.model.encode(features))
    )


def test_a_second_call_reuses_the_copy(
    tmp_path: Path, bundled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = ensure_int8(bundled, tmp_path, "tiny.en")
    before = os.stat(copy / MODEL_FILE)

    def no_conversion(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(int8_model, "_convert_in_child", no_conversion)
    assert ensure_int8(bundled, tmp_path, "tiny.en") == copy
    after = os.stat(copy / MODEL_FILE)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # a model that is int8 already is loaded as it is
    assert ensure_int8(copy, tmp_path / "other") == copy


@pytest.mark.parametrize("damage", ["no model.bin", "truncated model.bin", "no manifest"])
def test_a_partial_copy_is_rebuilt(tmp_path: Path, bundled: Path, damage: str) -> None:
    copy = ensure_int8(bundled, tmp_path, "tiny.en")
    whole = (copy / MODEL_FILE).read_bytes()
    if damage == "no model.bin":
        (copy / MODEL_FILE).unlink()
    elif damage == "truncated model.bin":
        (copy / MODEL_FILE).write_bytes(whole[: len(whole) // 2])
    else:  # a crash before the manifest, the last file written
        (copy / MANIFEST_FILE).unlink()

    assert ensure_int8(bundled, tmp_path, "tiny.en") == copy
    assert (copy / MODEL_FILE).read_bytes() == whole
    source = json.loads((copy / MANIFEST_FILE).read_text())["source"]
    assert is_complete(copy, source)
    assert sorted(p.name for p in copy.parent.iterdir()) == [".tiny.en-int8.lock", "tiny.en-int8"]


def test_workers_starting_together_convert_once(
    tmp_path: Path, bundled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversions: list[Path] = []
    convert = int8_model._convert_in_child

    def counted(model_dir: Path, work: Path) -> None:
        conversions.append(work)
        convert(model_dir, work)

    monkeypatch.setattr(int8_model, "_convert_in_child", counted)
    # flock excludes other open files of the same process too: threads stand in for workers
    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(lambda _: ensure_int8(bundled, tmp_path, "tiny.en"), range(4)))
    assert copies == {tmp_path / "models" / "tiny.en-int8"}
    assert len(conversions) == 1


def test_an_unreadable_model_is_loaded_as_it_is(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / MODEL_FILE).write_bytes(b"\x06\x00")  # cut short in the header
    assert ensure_int8(model, tmp_path / "data") == model
    assert not (tmp_path / "data").exists()

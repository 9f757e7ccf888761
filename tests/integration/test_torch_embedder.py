"""The torch embed backend: sentence-transformers' vectors without sentence-transformers in the
worker, and a clear refusal of the models whose pooling it does not reproduce."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamscribe.common.errors import ConfigError
from streamscribe.embed.embedder import Embedder, resolve_model
from streamscribe.embed.settings import EmbedSection
from tests.integration.test_onnx_embedder import PASSAGES

pytestmark = pytest.mark.integration

BUNDLED = Path(resolve_model(EmbedSection()))
WORKER = """
import sys
from pathlib import Path

import streamscribe.embed.app
from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.settings import EmbedSection

vectors = load_embedder(EmbedSection(backend="torch"), Path(sys.argv[1])).embed(["a sentence"])
assert vectors.shape == (1, 384), vectors.shape
heavy = {"sentence_transformers", "onnxruntime"} & set(sys.modules)
assert not heavy, f"imported {sorted(heavy)}"
"""


def variant(directory: Path, modules: list[str], pooling: dict[str, Any]) -> EmbedSection:
    """The bundled model with other modules and pooling; weights and tokenizer linked."""
    directory.mkdir()
    for entry in BUNDLED.iterdir():
        if entry.name not in {"modules.json", "1_Pooling"}:
            (directory / entry.name).symlink_to(entry)
    paths = {"Transformer": "", "Pooling": "1_Pooling"}
    listed = [
        {"idx": i, "name": str(i), "path": paths.get(kind, f"{i}_{kind}"),
         "type": f"sentence_transformers.models.{kind}"}
        for i, kind in enumerate(modules)
    ]  # fmt: skip
    (directory / "modules.json").write_text(json.dumps(listed))
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return EmbedSection(backend="torch", model=str(directory))


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(EmbedSection(backend="torch", batch_size=8))


def test_vectors_match_sentence_transformers(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(BUNDLED), device="cpu")
    expected = reference.encode(PASSAGES, normalize_embeddings=True)
    vectors = embedder.embed(PASSAGES)
    assert vectors.dtype == np.float32
    assert vectors.shape == expected.shape == (len(PASSAGES), 384)
    assert float((vectors * expected).sum(axis=1).min()) >= 0.9999


def test_worker_on_torch_never_imports_sentence_transformers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def test_model_without_normalize_module_is_normalised_all_the_same(
    embedder: Embedder, tmp_path: Path
) -> None:
    """As sentence-transformers' `normalize_embeddings=True` and the ONNX export do."""
    section = variant(tmp_path / "plain", ["Transformer", "Pooling"], {"pooling_mode": "mean"})
    vectors = Embedder(section).embed(PASSAGES[:4])
    np.testing.assert_allclose(vectors, embedder.embed(PASSAGES[:4]), atol=1e-6)


@pytest.mark.parametrize(
    ("modules", "pooling", "message"),
    [
        (["Transformer", "Pooling"], {"pooling_mode": "cls"}, "mean of its tokens"),
        (
            ["Transformer", "Pooling"],
            {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
            "mean of its tokens",
        ),
        (["Transformer", "Pooling", "Dense", "Normalize"], {}, r"Pooling \+ Dense \+ Normalize"),
    ],
)
def test_pooling_it_cannot_reproduce_is_a_config_error(
    tmp_path: Path, modules: list[str], pooling: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Embedder(variant(tmp_path / "model", modules, pooling))


def test_directory_that_is_not_a_sentence_transformers_model_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"modules\.json"):
        Embedder(EmbedSection(backend="torch", model=str(tmp_path)))

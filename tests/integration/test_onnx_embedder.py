"""The lean embed backend: the int8 ONNX export reproduces the torch model, ranks search hits
the same, keeps torch out of the worker, and says clearly when its directory is unusable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from streamscribe.common.errors import ConfigError
from streamscribe.embed.embedder import Embedder, TextEmbedder, load_embedder, onnx_dir
from streamscribe.embed.onnx_embedder import MANIFEST_FILE, MODEL_FILE, OnnxEmbedder
from streamscribe.embed.onnx_export import ensure_exported
from streamscribe.embed.settings import EmbedSection
from tests.integration.speech import SENTENCES

pytestmark = pytest.mark.integration

# passages as the service cuts them: a sentence or two, up to about 60 words
PASSAGES = SENTENCES + [f"{a} {b}" for a, b in zip(SENTENCES[::2], SENTENCES[1::2], strict=True)]
QUERIES = [
    "where can I buy bread before sunrise",
    "a baby elephant at the zoo",
    "the football match was moved because of rain",
    "students built a robot that sorts waste",
    "jazz on the radio after dinner",
    "old maps in the museum",
    "firefighters saved a cat from the church roof",
    SENTENCES[20],  # the end-to-end acceptance query
]
WORKER = """
import sys
from pathlib import Path

import streamscribe.embed.app
import streamscribe.api.app
from streamscribe.embed.embedder import load_embedder
from streamscribe.embed.settings import EmbedSection

vectors = load_embedder(EmbedSection(backend="onnx"), Path(sys.argv[1])).embed(["a sentence"])
assert vectors.shape == (1, 384), vectors.shape
heavy = {"torch", "transformers", "sentence_transformers"} & set(sys.modules)
assert not heavy, f"imported {sorted(heavy)}"
"""


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def onnx(data_dir: Path) -> TextEmbedder:
    """Two replicas' first start on the default backend: one exports, in a child process."""
    with ThreadPoolExecutor(2) as pool:
        first, _ = pool.map(lambda _: load_embedder(EmbedSection(), data_dir), range(2))
    return first


@pytest.fixture(scope="session")
def torch_embedder(data_dir: Path) -> TextEmbedder:
    return load_embedder(EmbedSection(backend="torch"), data_dir)


@pytest.fixture(scope="session")
def exported(onnx: TextEmbedder, data_dir: Path) -> Path:
    return onnx_dir(EmbedSection(), data_dir)


def test_first_start_exports_once_atomically_into_the_data_dir(
    onnx: TextEmbedder, torch_embedder: TextEmbedder, data_dir: Path
) -> None:
    assert isinstance(onnx, OnnxEmbedder)
    assert isinstance(torch_embedder, Embedder)
    models = data_dir / "models"
    assert [p.name for p in models.iterdir() if p.is_dir()] == ["all-MiniLM-L6-v2-onnx-int8"]
    assert onnx.dimension == torch_embedder.dimension == 384


def test_onnx_embeddings_match_torch(onnx: TextEmbedder, torch_embedder: TextEmbedder) -> None:
    lean, reference = onnx.embed(PASSAGES), torch_embedder.embed(PASSAGES)
    assert lean.dtype == np.float32
    assert lean.shape == reference.shape == (len(PASSAGES), 384)
    np.testing.assert_allclose(np.linalg.norm(lean, axis=1), 1.0, atol=1e-5)
    assert float((lean * reference).sum(axis=1).min()) >= 0.99


def test_queries_find_the_same_top_passage(
    onnx: TextEmbedder, torch_embedder: TextEmbedder
) -> None:
    def top(embedder: TextEmbedder) -> list[int]:
        scores = embedder.embed(QUERIES) @ embedder.embed(SENTENCES).T
        return [int(i) for i in scores.argmax(axis=1)]

    hits = top(onnx)
    assert hits == top(torch_embedder)
    assert hits[-1] == 20


def test_worker_on_onnx_never_imports_torch(exported: Path, data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(data_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_missing_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="onnx_export --out"):
        OnnxEmbedder(tmp_path / "absent")


@pytest.mark.parametrize(
    ("name", "content"),
    [(MANIFEST_FILE, "{"), (MANIFEST_FILE, '{"pooling": "cls"}'), (MODEL_FILE, "not onnx")],
)
def test_corrupt_dir_is_a_config_error(
    exported: Path, tmp_path: Path, name: str, content: str
) -> None:
    broken = shutil.copytree(exported, tmp_path / "broken")
    (broken / name).write_text(content)
    with pytest.raises(ConfigError, match=r"broken.*delete"):
        OnnxEmbedder(broken)


def test_failed_export_is_a_config_error_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "models" / "nothing-onnx-int8"
    with pytest.raises(ConfigError, match="Unrecognized model"):
        ensure_exported(str(tmp_path), out)
    assert [p for p in out.parent.iterdir() if p.is_dir()] == []

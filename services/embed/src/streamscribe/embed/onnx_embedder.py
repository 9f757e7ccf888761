"""The lean embedder: an int8 ONNX export run by onnxruntime, tokenised by `tokenizers`.

Nothing here imports torch or transformers, so a worker on this backend never loads them.
`onnx_export` writes the directory this reads: model.onnx, tokenizer.json and manifest.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ValidationError
from tokenizers import Tokenizer

from streamscribe.common.errors import ConfigError
from streamscribe.embed.pooling import (
    embed_longest_first,
    match_sentence_transformers,
    mean_pool,
    model_inputs,
)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"


class Manifest(BaseModel):
    """How to turn the model's token vectors into the sentence-transformers embedding."""

    pooling: Literal["mean"]
    normalize: Literal[True]
    max_seq_length: int
    dimension: int
    pad_token: str
    pad_id: int


def read_manifest(directory: Path) -> Manifest:
    if not directory.is_dir():
        raise ConfigError(
            f"no ONNX model at {directory}; export one with "
            f"`python -m streamscribe.embed.onnx_export --out {directory}`"
        )
    path = directory / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        detail = f"{path} is missing or corrupt; delete {directory} to export again"
        raise ConfigError(detail) from exc


class OnnxEmbedder:
    """Blocking, like `Embedder`: the service calls it off the event loop."""

    def __init__(self, directory: Path, batch_size: int = 32, threads: int = 2) -> None:
        manifest = read_manifest(directory)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # prepacked weights are a second copy of the model in memory, for a little speed
        options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
            self.session = ort.InferenceSession(
                str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # both libraries raise bare Exception subclasses
            raise ConfigError(
                f"unusable ONNX model in {directory} ({exc}); delete it to export again"
            ) from exc
        match_sentence_transformers(
            self.tokenizer, manifest.max_seq_length, manifest.pad_token, manifest.pad_id
        )
        self.inputs = [node.name for node in self.session.get_inputs()]
        if unknown := set(self.inputs) - model_inputs([]).keys():
            raise ConfigError(f"ONNX model in {directory} wants unknown inputs {sorted(unknown)}")
        self.batch_size = batch_size
        self._dimension = manifest.dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text."""
        return embed_longest_first(texts, self.batch_size, self._dimension, self._embed_batch)

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        feeds = model_inputs(self.tokenizer.encode_batch(texts))
        (tokens,) = self.session.run(None, {name: feeds[name] for name in self.inputs})
        return mean_pool(tokens, feeds["attention_mask"])

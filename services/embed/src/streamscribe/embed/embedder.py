"""The embedder: one model per process, normalised vectors in batches.

Two backends behind one protocol: `Embedder` (a sentence-transformers model's transformer on
torch) and `OnnxEmbedder` (the same model exported to int8 ONNX; onnxruntime only).
`load_embedder` picks by setting. `Embedder` reads the model's sentence-transformers config
files itself and pools in numpy like `OnnxEmbedder` (`pooling`), so its worker imports torch,
transformers and tokenizers but never sentence-transformers (scikit-learn, rich...: ~50 MB).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from streamscribe.common import models as common_models
from streamscribe.common.errors import ConfigError
from streamscribe.embed.model_files import onnx_dir as onnx_dir
from streamscribe.embed.model_files import resolve_model as resolve_model
from streamscribe.embed.pooling import (
    embed_longest_first,
    match_sentence_transformers,
    mean_pool,
    model_inputs,
)
from streamscribe.embed.settings import EmbedSection

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# the modules `Embedder` reproduces. Normalize may be absent: `embed` normalises anyway, as the
# ONNX backend and sentence-transformers' `encode(normalize_embeddings=True)` do
PIPELINES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])


class TextEmbedder(Protocol):
    """What the service and search need from a backend; blocking, called off the event loop."""

    batch_size: int
    """Texts per forward pass: the settings' `batch_size`, or what the memory budget admits."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text, `batch_size` texts at a time."""
        ...


_LOADED: dict[tuple[str, Path], TextEmbedder] = {}


def shared_embedder(section: EmbedSection, data_dir: Path) -> TextEmbedder:
    """The embedder of this process for these settings, loaded on first use: embed's handlers
    and the HTTP API in one process share one model (a second would cost its whole size)."""
    key = (section.model_dump_json(), data_dir.resolve())
    if key not in _LOADED:
        _LOADED[key] = load_embedder(section, data_dir)
    return _LOADED[key]


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
    """The model's transformer on torch, pooled as sentence-transformers pools it.

    Blocking; the service calls it off the event loop.
    """

    def __init__(self, section: EmbedSection) -> None:
        model = _hub_name(resolve_model(section))
        common_models.hub_environment(offline=not section.allow_download)
        folder = _transformer_folder(model)
        config = _read_json(model, folder, "sentence_bert_config.json")
        self.tokenizer = Tokenizer.from_file(_model_file(model, folder, "tokenizer.json"))
        match_sentence_transformers(
            self.tokenizer, config["max_seq_length"], *_pad_token(model, folder, self.tokenizer)
        )
        self.lowercase = bool(config.get("do_lower_case"))
        from transformers import AutoModel  # torch: only on this backend

        self.model: PreTrainedModel = AutoModel.from_pretrained(model, subfolder=folder)
        accepted = inspect.signature(self.model.forward).parameters
        self.inputs = [name for name in model_inputs([]) if name in accepted]
        self.batch_size = section.batch_size

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text."""
        return embed_longest_first(texts, self.batch_size, self.dimension, self._embed_batch)

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import torch

        if self.lowercase:  # sentence_bert_config's do_lower_case, on top of the tokenizer's
            texts = [text.lower() for text in texts]
        ids = model_inputs(self.tokenizer.encode_batch(texts))
        with torch.inference_mode():
            output = self.model(**{name: torch.from_numpy(ids[name]) for name in self.inputs})
        return mean_pool(output.last_hidden_state.numpy(), ids["attention_mask"])


def _hub_name(model: str) -> str:
    """A short hub name means the sentence-transformers organisation, as that library reads it."""
    return model if "/" in model or Path(model).is_dir() else f"sentence-transformers/{model}"


def _model_file(model: str, *parts: str) -> str:
    """A file of the model directory, or of the hub repo (fetched only when allowed)."""
    name = "/".join(part for part in parts if part)
    if Path(model).is_dir():
        path = Path(model, name)
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: the torch backend needs a sentence-transformers model"
            )
        return str(path)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(model, name)
    except OSError as exc:  # the hub's errors: not found, offline, HTTP
        raise ConfigError(f"embed model {model}: cannot fetch {name} ({exc})") from exc


def _read_json(model: str, *parts: str) -> Any:
    with open(_model_file(model, *parts), encoding="utf-8") as file:
        return json.load(file)


def _transformer_folder(model: str) -> str:
    """Where the transformer is, once the modules are known to be what `Embedder` reproduces."""
    modules = _read_json(model, "modules.json")
    kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
    if kinds not in PIPELINES:
        raise ConfigError(
            f"embed model {model} is {' + '.join(kinds)}; the torch backend runs only "
            "Transformer + Pooling (+ Normalize), e.g. all-MiniLM-L6-v2"
        )
    pooling = _read_json(model, modules[1]["path"], "config.json")
    if not _is_mean_pooling(pooling):
        raise ConfigError(
            f"embed model {model} does not pool by the mean of its tokens "
            f"({modules[1]['path']}/config.json); the torch backend supports mean pooling only"
        )
    return str(modules[0]["path"])


def _is_mean_pooling(config: dict[str, Any]) -> bool:
    """`pooling_mode` of recent sentence-transformers, or its legacy flags (none set: mean)."""
    if "pooling_mode" in config:
        return config["pooling_mode"] in ("mean", ["mean"])
    modes = {key for key, on in config.items() if key.startswith("pooling_mode_") and on}
    return modes <= {"pooling_mode_mean_tokens"}


def _pad_token(model: str, folder: str, tokenizer: Tokenizer) -> tuple[str, int]:
    """The token transformers pads with (tokenizer_config.json), and its id."""
    token = _read_json(model, folder, "tokenizer_config.json").get("pad_token")
    if isinstance(token, dict):  # older tokenizer configs spell out the AddedToken
        token = token.get("content")
    if not isinstance(token, str) or (pad_id := tokenizer.token_to_id(token)) is None:
        raise ConfigError(f"embed model {model} has no pad token in its tokenizer_config.json")
    return token, pad_id

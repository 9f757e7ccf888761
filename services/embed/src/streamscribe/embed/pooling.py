"""What both embed backends do around the transformer, the way sentence-transformers does it:
tokenise, batch longest first, mean-pool the token vectors over the attention mask, normalise.

numpy and `tokenizers` only, so that neither backend's worker loads more than its model needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

Vectors = npt.NDArray[np.float32]


def match_sentence_transformers(
    tokenizer: Tokenizer, max_seq_length: int, pad_token: str, pad_id: int
) -> None:
    """Truncate and pad as sentence-transformers does, whatever tokenizer.json says."""
    # tokenizer.json carries the hub's fixed padding and 128-token truncation; match
    # sentence-transformers instead: its max_seq_length, padding to the longest in a batch
    tokenizer.enable_truncation(max_seq_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)


def model_inputs(encodings: list[Encoding]) -> dict[str, npt.NDArray[np.int64]]:
    """Every input a BERT-like model may declare; each backend passes the ones its model has."""
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def embed_longest_first(
    texts: Sequence[str],
    batch_size: int,
    dimension: int,
    embed_batch: Callable[[list[str]], Vectors],
) -> Vectors:
    """`embed_batch` over `texts` in batches, rows back in the order of `texts`."""
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    # longest first, as sentence-transformers does: batches of similar length pad least
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        vectors[rows] = embed_batch([texts[i] for i in rows])
    return vectors


def mean_pool(tokens: npt.NDArray[np.float32], attention_mask: npt.NDArray[np.int64]) -> Vectors:
    """Each text's mean token vector, padding left out, scaled to unit length."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return np.asarray(pooled / norms, dtype=np.float32)

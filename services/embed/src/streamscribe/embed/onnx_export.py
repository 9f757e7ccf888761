"""Export a sentence-transformers model to int8 ONNX for `OnnxEmbedder`.

Runs in its own process, `python -m streamscribe.embed.onnx_export [--model M] [--out DIR]`
(both default to the settings), so that torch is loaded by the export and never by the worker.
The directory appears atomically: built beside its final place, then renamed.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamscribe.common.errors import ConfigError, StreamscribeError
from streamscribe.common.models import hub_environment
from streamscribe.embed.model_files import onnx_dir, resolve_model
from streamscribe.embed.onnx_embedder import (
    MANIFEST_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    Manifest,
    OnnxEmbedder,
)
from streamscribe.embed.settings import EmbedSettings

MODULE = "streamscribe.embed.onnx_export"
log = logging.getLogger(__name__)
PROBES = [
    "The morning train to the coast was late again, so the passengers waited on the platform.",
    "Volunteers cleaned the beach and collected many bags of rubbish.",
    "A new cycling path now connects the university with the central station.",
    "Scientists measured the temperature of the lake at different depths each month.",
]
MIN_COSINE = 0.98  # the probes' floor; a wrong pooling or a lost layer scores far lower


def ensure_exported(model: str, out: Path) -> None:
    """Export `model` into `out` in a child process, unless `out` already exists."""
    if out.exists():
        return
    log.info("exporting %s to int8 ONNX in %s", model, out)
    command = [sys.executable, "-m", MODULE, "--model", model, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(
            f"exporting {model} to ONNX failed (exit {result.returncode}): {detail[0]}"
        )


def export(model: str, out: Path) -> bool:
    """Build the int8 export of `model` beside `out`, check it, rename it into place.

    False when `out` exists already, possibly exported by another process while this one
    waited for the lock: replicas starting together export once.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / f".{out.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            return False
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            write_export(model, work)
            work.chmod(0o755)  # mkdtemp made it private; the CLI's search reads it too
            work.rename(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return True


def write_export(model: str, directory: Path) -> None:
    from sentence_transformers import SentenceTransformer  # torch: only in this process

    # eager attention traces to plain MatMul and Softmax; traced SDPA adds NaN guards that
    # double the memory of a forward pass (16 instead of 9 MiB per 256-token passage)
    encoder = SentenceTransformer(
        model, device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    first: Any = encoder[0]  # the Transformer module: a Hugging Face model and its tokenizer
    transformer, tokenizer = first.auto_model.eval(), first.tokenizer
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ConfigError(f"{model} has no fast tokenizer (tokenizer.json) for the ONNX backend")
    float_model = directory / "float.onnx"
    sample = dict(tokenizer(PROBES, padding=True, return_tensors="pt"))
    export_graph(transformer, sample, float_model)
    quantize(float_model, directory / MODEL_FILE)
    float_model.unlink()
    tokenizer.backend_tokenizer.save(str(directory / TOKENIZER_FILE))
    manifest = Manifest(
        pooling="mean",
        normalize=True,
        max_seq_length=encoder.max_seq_length,
        dimension=transformer.config.hidden_size,
        pad_token=tokenizer.pad_token,
        pad_id=tokenizer.pad_token_id,
    )
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    check(OnnxEmbedder(directory).embed(PROBES), encoder.encode(PROBES, normalize_embeddings=True))


def export_graph(transformer: Any, sample: dict[str, Any], path: Path) -> None:
    """The transformer alone, token vectors out: pooling stays in numpy, as the manifest says."""
    import torch

    names = list(sample)

    class TokenVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            output = self.transformer(**dict(zip(names, inputs, strict=True)))
            vectors: torch.Tensor = output.last_hidden_state
            return vectors

    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "token_vectors"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes fixed by this sample
        torch.onnx.export(
            TokenVectors(),
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=["token_vectors"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the dynamo exporter needs onnxscript; TorchScript tracing does not
            external_data=False,
        )


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8, per channel, except the feed-forward down-projections.

    Those read the GELU outputs, whose outliers int8 cannot hold: quantizing them too drops
    the cosine with the float model from about 0.993 to 0.98 on ordinary sentences.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    down = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(weight := shapes.get(node.input[1], [])) == 2
        and weight[0] > weight[1]
    ]
    quantize_dynamic(
        source, target, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=down
    )


def check(onnx_vectors: npt.NDArray[np.float32], torch_vectors: npt.NDArray[Any]) -> None:
    """Refuse an export that does not reproduce the model (e.g. CLS pooling, a Dense layer)."""
    if onnx_vectors.shape != torch_vectors.shape:
        raise ConfigError(
            f"ONNX export gives {onnx_vectors.shape[1]} dimensions, the model "
            f"{torch_vectors.shape[1]}: use STREAMSCRIBE_EMBED__BACKEND=torch for this model"
        )
    worst = float((onnx_vectors * torch_vectors).sum(axis=1).min())
    if worst < MIN_COSINE:
        raise ConfigError(
            f"ONNX export reproduces the model only to cosine {worst:.3f} (needs {MIN_COSINE}): "
            "use STREAMSCRIBE_EMBED__BACKEND=torch for this model"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--model", help="model path or name; default: STREAMSCRIBE_EMBED__MODEL")
    parser.add_argument("--out", type=Path, help="default: STREAMSCRIBE_EMBED__ONNX_DIR")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # onnxruntime's quantizer advises at WARNING
    settings = EmbedSettings()
    section = settings.embed.model_copy(update={"model": args.model or settings.embed.model})
    out = args.out or onnx_dir(section, settings.data_dir)
    try:
        model = resolve_model(section)
        hub_environment(offline=Path(model).is_dir())  # a local model never needs the hub
        exported = export(model, out)
    except StreamscribeError as exc:
        sys.exit(f"error: {exc}")
    print(out if exported else f"{out} exists; delete it to export again")


if __name__ == "__main__":
    main()

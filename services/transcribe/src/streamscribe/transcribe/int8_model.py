"""An int8 copy of a float CTranslate2 model, written once, so that loading it converts nothing.

Asked for `compute_type="int8"`, CTranslate2 loads a float16 `model.bin` whole and then quantizes
it, holding both copies: for the bundled Whisper tiny.en that is ~100 MiB of peak RSS above what
the loaded model keeps. `ensure_int8` writes, at first start, the weights the loader would end up
with into `<data_dir>/models/<name>-int8/`; every later load reads them as they are.

`model.bin` (written by ctranslate2/specs/model_spec.py, read by src/models/model.cc),
little-endian; a string is a uint16 length counting a trailing NUL, the UTF-8 bytes, the NUL:

    uint32 binary version, string spec name, uint32 spec revision
    uint32 variable count; per variable: string name, uint8 rank, uint32 per dimension,
        uint8 dtype (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16),
        uint32 byte count, the bytes (row-major)
    uint32 alias count; per alias: string alias, string name of the variable it shares

The copy holds what `Model::set_compute_type` makes of the variables for int8 on CPU:

- a weight (a name ending in "weight": linear layers, embeddings) quantized per row, as the
  C++ quantizer does for binary version >= 5 (kernels.cc `quantize_s8_row`, also
  model_spec.py): scale = 127 / max|row| (1 for a zero row), int8 = round-half-even(value *
  scale), with the scales as float32 `<name>_scale`;
- a convolution weight (its name has "conv") as float32: the oneDNN CPU backend of the wheels
  runs convolutions in float and converts them so at load (a build without oneDNN quantizes
  this float32 on load exactly as it would the float16);
- other float arrays as float32; scalars and aliases as they are (the loader aliases
  `<alias>_scale` itself). Version, spec name and revision are copied, so the loader treats the
  copy as it treated the original.

So the copy transcribes exactly as on-load quantization does. `ctranslate2.specs` is not used:
`optimize` quantizes convolutions too, which oneDNN then dequantizes (not the same weights), and
a spec holds every variable in memory; a loaded ctranslate2 model has no save API.

The conversion runs in a child process (`python -m streamscribe.transcribe.int8_model SRC DST`,
numpy only), reading a block of rows at a time, so that no float copy of the model ever counts
in the worker's peak. The directory appears atomically (built beside its place under a lock,
then renamed), with a manifest naming its source; a missing or partial one is rebuilt.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import json
import logging
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

MODULE = "streamscribe.transcribe.int8_model"
MODEL_FILE = "model.bin"
MANIFEST_FILE = "int8-manifest.json"
# Bump when what the converter writes changes: copies with another format are rebuilt.
FORMAT = 1
# 5: the loader rounds before casting when it quantizes; 6: the current version. Older files are
# quantized on load by truncation, or lack dtype ids and aliases: left to the loader.
VERSIONS = (5, 6)
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # types.h DataType order
FLOATS = ("float32", "float16")  # numpy has no bfloat16: such a model is left to the loader
BLOCK_BYTES = 2**20  # source bytes converted at a time: the converter's working set
CONVERT_TIMEOUT = 1800.0

log = logging.getLogger(__name__)


class UnsupportedModelError(Exception):
    """The model needs no int8 copy, or not one this converter can write."""


@dataclass(frozen=True)
class Variable:
    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int  # of its bytes in the file
    nbytes: int

    @property
    def is_weight(self) -> bool:
        """What the loader quantizes for int8 (`Model::is_quantizable`)."""
        return self.name.endswith("weight") and bool(self.shape)

    @property
    def kind(self) -> str:
        """What the copy holds: `quantize`d rows, a `float32` array, or the bytes as they are."""
        if not self.shape or self.dtype not in FLOATS or "_scale" in self.name:
            return "copy"
        return "quantize" if self.is_weight and "conv" not in self.name else "float32"

    @property
    def rows(self) -> tuple[int, int]:
        """Rows and items per row: quantization scales go per row (a 1-D array is one row)."""
        if len(self.shape) < 2:
            return 1, int(np.prod(self.shape))
        return self.shape[0], int(np.prod(self.shape[1:]))


@dataclass(frozen=True)
class ModelFile:
    version: int
    spec: str
    revision: int
    variables: list[Variable]
    aliases: list[tuple[str, str]]


def ensure_int8(model_dir: Path, data_dir: Path, name: str | None = None) -> Path:
    """The int8 copy of the CTranslate2 model in `model_dir`, written first if missing, partial
    or of another source; `model_dir` itself when its weights need no copy or the copy cannot be
    written (then CTranslate2 quantizes on load, as without a data dir)."""
    try:
        source = fingerprint(model_dir)
    except UnsupportedModelError as exc:
        log.info("loading %s as it is: %s", model_dir, exc)
        return model_dir
    out = data_dir / "models" / f"{name or model_dir.name}-int8"
    if is_complete(out, source):
        return out
    try:
        build(model_dir, out, source)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no int8 copy of %s (%s); quantizing it on load", model_dir, exc)
        return model_dir
    return out


def fingerprint(model_dir: Path) -> dict[str, object]:
    """What the manifest of a copy of `model_dir` says. `UnsupportedModelError` when the model is
    quantized already or not a CTranslate2 model this converter reads."""
    path = model_dir / MODEL_FILE
    try:
        model = read_model(path)
        stat = path.stat()
    except (OSError, struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise UnsupportedModelError(f"no readable {MODEL_FILE}: {exc}") from exc
    weights = [variable for variable in model.variables if variable.is_weight]
    if not weights or any(weight.dtype not in FLOATS for weight in weights):
        raise UnsupportedModelError("its weights are quantized already, or not float16/float32")
    # the loader quantizes other ranks over their last dimension; none seen in Whisper
    if odd := [w.name for w in weights if w.kind == "quantize" and len(w.shape) != 2]:
        raise UnsupportedModelError(f"{odd[0]} is not a matrix")
    # path, size and mtime: a reinstalled or replaced model gets a new copy; no hash of the
    # whole file at every start
    return {
        "format": FORMAT,
        "source": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def is_complete(out: Path, source: dict[str, object]) -> bool:
    """A copy of this source, whole: the manifest is written last, and lists what it wrote."""
    try:
        manifest = json.loads((out / MANIFEST_FILE).read_text())
        sizes = {name: (out / name).stat().st_size for name in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(manifest["source"] == source and sizes == manifest["files"])


def build(model_dir: Path, out: Path, source: dict[str, object]) -> None:
    """Convert in a child process beside `out`, then rename into place; under a lock, so that
    workers starting together convert once and the later ones find the copy made."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / f".{out.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(out, source):
            return
        _sweep(out)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            _convert_in_child(model_dir, work)
            if not is_complete(work, source):
                raise OSError(f"the converter left no complete copy in {work}")
            work.chmod(0o755)  # mkdtemp made it private; other users' workers may read it
            if out.exists():  # partial, or of another source
                out.rename(work.with_name(f"{work.name}.old"))
            work.rename(out)
        finally:
            _sweep(out)


def _sweep(out: Path) -> None:
    """Remove work dirs beside `out` left by a crashed or failed conversion (under the lock:
    nobody else is converting into them)."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _convert_in_child(model_dir: Path, work: Path) -> None:
    """The child holds the float weights it reads; the worker's own peak never does."""
    log.info("writing the int8 copy of %s (once)", model_dir)
    command = [sys.executable, "-m", MODULE, str(model_dir), str(work)]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=CONVERT_TIMEOUT
    )
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise OSError(f"converter exit {result.returncode}: {detail[0]}")


def convert(model_dir: Path, out: Path) -> None:
    """Write the int8 copy of `model_dir` into the directory `out`, manifest last."""
    source = fingerprint(model_dir)
    model = read_model(model_dir / MODEL_FILE)
    out.mkdir(parents=True, exist_ok=True)
    with (model_dir / MODEL_FILE).open("rb") as src, (out / MODEL_FILE).open("wb") as dst:
        write_model(model, src, dst)
    files = [MODEL_FILE]
    for companion in sorted(model_dir.iterdir()):
        # the vocabulary, config.json, tokenizer and preprocessor files: read as they were
        if companion.is_file() and companion.name not in (MODEL_FILE, MANIFEST_FILE):
            shutil.copyfile(companion, out / companion.name)
            files.append(companion.name)
    manifest = {"source": source, "files": {name: (out / name).stat().st_size for name in files}}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


# reading


def read_model(path: Path) -> ModelFile:
    """The header, the variables' places and the aliases of a `model.bin`; no weights read."""
    with path.open("rb") as f:
        version = _unpack(f, "I")
        if version not in VERSIONS:
            raise UnsupportedModelError(f"binary version {version}")
        spec, revision = _read_string(f), _unpack(f, "I")
        variables = [_read_variable(f) for _ in range(_unpack(f, "I"))]
        aliases = [(_read_string(f), _read_string(f)) for _ in range(_unpack(f, "I"))]
        if f.read(1):
            raise ValueError("bytes after the aliases")
    return ModelFile(version, spec, revision, variables, aliases)


def _read_variable(f: BinaryIO) -> Variable:
    name = _read_string(f)
    shape = tuple(_unpack(f, "I") for _ in range(_unpack(f, "B")))
    dtype, nbytes = DTYPES[_unpack(f, "B")], _unpack(f, "I")
    variable = Variable(name, shape, dtype, f.tell(), nbytes)
    if dtype in FLOATS and nbytes != np.dtype(dtype).itemsize * int(np.prod(shape)):
        raise ValueError(f"{name}: {nbytes} bytes for shape {shape}")
    f.seek(nbytes, 1)
    return variable


def _unpack(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize("<" + fmt)
    value: int = struct.unpack("<" + fmt, f.read(size))[0]
    return value


def _read_string(f: BinaryIO) -> str:
    length = _unpack(f, "H")
    return f.read(length)[:-1].decode()


def _read_rows(src: BinaryIO, variable: Variable) -> Iterator[npt.NDArray[np.float32]]:
    """The variable as float32 rows, a block of them at a time: never the whole of it."""
    rows, row_items = variable.rows
    block_rows = max(1, BLOCK_BYTES // max(1, row_items * np.dtype(variable.dtype).itemsize))
    src.seek(variable.offset)
    for start in range(0, rows, block_rows):
        count = min(block_rows, rows - start) * row_items
        block = np.fromfile(src, dtype=variable.dtype, count=count)
        if block.size != count:
            raise ValueError(f"{variable.name}: the file ends inside it")
        yield block.reshape(-1, row_items).astype(np.float32, copy=False)


# writing


def write_model(model: ModelFile, src: BinaryIO, dst: BinaryIO) -> None:
    """Stream the variables of `src` into `dst` as the loader would hold them for int8."""
    quantized = sum(variable.kind == "quantize" for variable in model.variables)
    dst.write(struct.pack("<I", model.version))
    _write_string(dst, model.spec)
    dst.write(struct.pack("<II", model.revision, len(model.variables) + quantized))
    for variable in model.variables:
        _write_variable(variable, src, dst)
    dst.write(struct.pack("<I", len(model.aliases)))
    for alias, name in model.aliases:
        _write_string(dst, alias)
        _write_string(dst, name)


def _write_variable(variable: Variable, src: BinaryIO, dst: BinaryIO) -> None:
    if variable.kind == "quantize":
        _write_quantized(variable, src, dst)
    elif variable.kind == "float32":
        _write_header(dst, variable.name, variable.shape, "float32")
        for block in _read_rows(src, variable):
            dst.write(block.tobytes())
    else:
        _write_header(dst, variable.name, variable.shape, variable.dtype, variable.nbytes)
        src.seek(variable.offset)
        dst.write(src.read(variable.nbytes))  # scalars and integer arrays: small


def _write_quantized(variable: Variable, src: BinaryIO, dst: BinaryIO) -> None:
    """The int8 rows, then their float32 scales as `<name>_scale`."""
    _write_header(dst, variable.name, variable.shape, "int8")
    scales = []
    for block in _read_rows(src, variable):
        values, scale = quantize_rows(block)
        dst.write(values.tobytes())
        scales.append(scale)
    scale = np.concatenate(scales)
    _write_header(dst, f"{variable.name}_scale", scale.shape, "float32")
    dst.write(scale.tobytes())


def quantize_rows(
    rows: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """CTranslate2's int8 quantization of a float32 matrix, per row (kernels.cc
    `quantize_s8_row`): every step in float32, so the bytes are the loader's own."""
    amax = np.abs(rows).max(axis=1)
    scale = np.ones_like(amax)
    np.divide(np.float32(127), amax, out=scale, where=amax != 0)
    return np.rint(rows * scale[:, None]).astype(np.int8), scale


def _write_header(
    dst: BinaryIO, name: str, shape: tuple[int, ...], dtype: str, nbytes: int | None = None
) -> None:
    _write_string(dst, name)
    dst.write(struct.pack(f"<B{len(shape)}I", len(shape), *shape))
    if nbytes is None:
        nbytes = np.dtype(dtype).itemsize * int(np.prod(shape))
    dst.write(struct.pack("<BI", DTYPES.index(dtype), nbytes))


def _write_string(dst: BinaryIO, value: str) -> None:
    data = value.encode()
    dst.write(struct.pack("<H", len(data) + 1) + data + b"\0")


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("source", type=Path, help="a float CTranslate2 model directory")
    parser.add_argument("out", type=Path, help="where the int8 copy is written")
    args = parser.parse_args()
    try:
        convert(args.source, args.out)
    except UnsupportedModelError as exc:
        sys.exit(f"error: {args.source}: {exc}")
    print(args.out)


if __name__ == "__main__":
    main()

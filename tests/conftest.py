"""Shared test helpers: system tools are required in CI and may only be skipped locally."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The checkout's data dir, where `make install` writes the embed model's ONNX export: the tests
# load their models from here, prepared once, never per test data dir.
SHARED_DATA_DIR = Path(__file__).parents[1] / "data"
SHARED_ONNX_DIR = SHARED_DATA_DIR / "models" / "all-MiniLM-L6-v2-onnx-int8"


def require_tool(name: str) -> str:
    """Path of a system tool; a missing tool fails in CI (`.ci/run` installs them all)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path

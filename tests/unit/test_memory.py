"""The memory budget: cgroup limits, the ceiling in force, what a worker admits, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamscribe.common import memory
from streamscribe.common.errors import ConfigError
from streamscribe.common.memory import Marks, admitted, read_cgroup_limit, resolve_marks
from streamscribe.common.settings import CommonSettings, MemorySettings

MiB = 2**20


def _cgroup_v2(root: Path, text: str) -> Path:
    (root / "memory.max").write_text(text)
    return root


def _cgroup_v1(root: Path, text: str) -> Path:
    (root / "memory").mkdir()
    (root / "memory" / "memory.limit_in_bytes").write_text(text)
    return root


@pytest.mark.parametrize(
    ("text", "limit"),
    [("536870912\n", 512 * MiB), ("max\n", None), ("", None)],
)
def test_cgroup_v2_limit(tmp_path: Path, text: str, limit: int | None) -> None:
    assert read_cgroup_limit(_cgroup_v2(tmp_path, text)) == limit


@pytest.mark.parametrize(
    ("text", "limit"),
    [("1073741824\n", 1024 * MiB), ("9223372036854771712\n", None)],
)
def test_cgroup_v1_limit(tmp_path: Path, text: str, limit: int | None) -> None:
    assert read_cgroup_limit(_cgroup_v1(tmp_path, text)) == limit


def test_cgroup_v2_wins_over_v1(tmp_path: Path) -> None:
    _cgroup_v1(tmp_path, "1073741824")
    assert read_cgroup_limit(_cgroup_v2(tmp_path, "max")) is None


def test_no_cgroup_files_mean_no_limit(tmp_path: Path) -> None:
    assert read_cgroup_limit(tmp_path) is None


def test_the_lower_of_setting_and_cgroup_is_the_ceiling(tmp_path: Path) -> None:
    root = _cgroup_v2(tmp_path, str(1024 * MiB))
    marks = resolve_marks(MemorySettings(ceiling_bytes=500 * MiB), root)
    assert marks == Marks(500 * MiB, 450 * MiB, 400 * MiB)
    assert resolve_marks(MemorySettings(ceiling_bytes=2048 * MiB), root).ceiling == 1024 * MiB
    assert resolve_marks(MemorySettings(ceiling_bytes=500 * MiB), tmp_path / "none").pause == (
        450 * MiB
    )


def test_the_cgroup_limit_is_the_ceiling_when_unset(tmp_path: Path) -> None:
    root = _cgroup_v2(tmp_path, str(1000 * MiB))
    settings = MemorySettings(pause_fraction=0.5, resume_fraction=0.25)
    assert resolve_marks(settings, root) == Marks(1000 * MiB, 500 * MiB, 250 * MiB, shared=True)


def test_a_process_in_a_host_cgroup_reads_its_own_limit_and_usage(tmp_path: Path) -> None:
    """On a host (no cgroup namespace) the process's cgroup is a subdirectory, named in
    /proc/self/cgroup; the root's files are not its limit."""
    own = tmp_path / "cgroup"
    own.write_text("9:pids:/\n4:memory:/box\n0::/\n")
    (tmp_path / "memory" / "box").mkdir(parents=True)
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "memory" / "box" / "memory.limit_in_bytes").write_text(f"{512 * MiB}\n")
    (tmp_path / "memory" / "box" / "memory.stat").write_text(
        f"cache 1000\nrss 10\ntotal_cache 5000\ntotal_rss {300 * MiB}\n"
    )
    dirs = memory.cgroup_dirs(tmp_path, own)
    assert dirs[:2] == [tmp_path, tmp_path / "memory" / "box"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory, "PROC_CGROUP", own)
        assert memory.read_cgroup_limit(tmp_path) == 512 * MiB
        assert memory.read_cgroup_usage(tmp_path) == 300 * MiB  # every process, no cache


def test_no_ceiling_anywhere_means_no_marks(tmp_path: Path) -> None:
    assert resolve_marks(MemorySettings(), _cgroup_v2(tmp_path, "max")) == Marks()


def test_admitted_is_what_fits_above_the_baseline() -> None:
    assert admitted(400 * MiB, 300 * MiB, 6 * MiB, 32) == 16
    assert admitted(400 * MiB, 100 * MiB, 6 * MiB, 32) == 32
    assert admitted(None, 10**12, 6 * MiB, 32) == 32


def test_admitted_refuses_to_start_when_too_little_fits() -> None:
    with pytest.raises(ConfigError, match="CEILING_BYTES"):
        admitted(400 * MiB, 410 * MiB, MiB, 30)
    with pytest.raises(ConfigError):
        admitted(400 * MiB, 390 * MiB, MiB, 30, least=15)
    assert admitted(400 * MiB, 385 * MiB, MiB, 30, least=15) == 15


@pytest.mark.parametrize(
    "fields",
    [
        {"pause_fraction": 0.8, "resume_fraction": 0.8},
        {"pause_fraction": 0.7, "resume_fraction": 0.8},
        {"pause_fraction": 1.0},
        {"resume_fraction": 0},
        {"ceiling_bytes": 1000},
        {"sample_seconds": 0},
        {"max_pause_seconds": 0},
    ],
)
def test_invalid_memory_settings_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        MemorySettings(**fields)


def test_memory_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCRIBE_MEMORY__CEILING_BYTES", str(512 * MiB))
    monkeypatch.setenv("STREAMSCRIBE_MEMORY__PAUSE_FRACTION", "0.85")
    memory = CommonSettings().memory
    assert (memory.ceiling_bytes, memory.pause_fraction, memory.resume_fraction) == (
        512 * MiB,
        0.85,
        0.8,
    )

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamscribe.common.tempfiles import TempRoot


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_job_dir_is_removed_on_success_and_on_failure(tmp_path: Path) -> None:
    root = TempRoot(tmp_path, "ingest")
    with root.job("m-1") as job:
        (job / "media.wav").write_bytes(b"x" * 1000)
        assert root.usage() == (1, 1000)
    assert not job.exists()
    held: list[Path] = []

    def fail_midway() -> None:
        with root.job("m-2") as job:
            held.append(job)
            (job / "part").write_bytes(b"x")
            raise RuntimeError("download failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert not held[0].exists()
    assert root.usage() == (0, 0)


def test_job_names_cannot_escape_the_root(tmp_path: Path) -> None:
    root = TempRoot(tmp_path, "ingest")
    with root.job("../../etc/passwd") as job:
        assert job.parent == root.path


def test_sweep_removes_dirs_of_dead_processes_only(tmp_path: Path) -> None:
    root = TempRoot(tmp_path, "ingest")
    dead = root.path / f"m-old.{_dead_pid()}"
    alive = root.path / f"m-live.{os.getpid()}"
    stray = root.path / "no-pid"
    for path in (dead, alive, stray):
        path.mkdir()
        (path / "f").write_bytes(b"1")
    removed = root.sweep()
    assert sorted(removed) == sorted([dead, stray])
    assert alive.exists()


async def test_new_jobs_wait_while_temp_bytes_are_over_quota(tmp_path: Path) -> None:
    root = TempRoot(tmp_path, "ingest")
    other_worker = root.path / f"m-big.{os.getpid()}"
    other_worker.mkdir()
    (other_worker / "media").write_bytes(b"x" * 5000)
    waiting = asyncio.create_task(root.wait_for_room(4000, poll_seconds=0.01))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    (other_worker / "media").unlink()
    await asyncio.wait_for(waiting, 5)

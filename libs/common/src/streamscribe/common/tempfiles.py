"""The temp-file lifecycle: every job gets its own dir under one root, removed when the job
ends (success or failure); dirs left by dead processes are swept at start-up."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamscribe.common import metrics

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TempRoot:
    """Per-job temp dirs named `<job>.<pid>` so another process can tell whose they are."""

    def __init__(self, root: Path, service: str) -> None:
        self.path = (root / service).resolve()  # yt-dlp joins relative paths twice
        self.path.mkdir(parents=True, exist_ok=True)

    def sweep(self) -> list[Path]:
        """Remove the dirs of processes that no longer run; return what was removed."""
        removed = []
        for entry in self.path.iterdir():
            _, _, pid = entry.name.rpartition(".")
            if not pid.isdigit() or not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        self.report()
        return removed

    @contextmanager
    def job(self, name: str) -> Iterator[Path]:
        """A fresh dir for one job, removed however the job ends."""
        path = self.path / f"{_SAFE.sub('_', name)[:80]}.{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            self.report()

    async def wait_for_room(self, quota_bytes: int, poll_seconds: float = 1.0) -> None:
        """Hold a new job while the jobs of every worker sharing this root hold over the quota."""
        while (held := self.usage()[1]) > quota_bytes:
            log.info("temp dirs hold %d bytes, over %d; waiting", held, quota_bytes)
            await asyncio.sleep(poll_seconds)

    def usage(self) -> tuple[int, int]:
        """(files, bytes) held under this root right now."""
        files = size = 0
        for dirpath, _, names in os.walk(self.path):
            for name in names:
                try:
                    size += os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    continue
                files += 1
        return files, size

    def report(self) -> None:
        files, size = self.usage()
        metrics.TEMP_FILES.set(files)
        metrics.TEMP_BYTES.set(size)

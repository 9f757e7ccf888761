"""Exact peak RSS: the kernel's high-water mark of a running process (VmHWM), or the rusage of
a child that has exited (wait4), instead of sampling that could miss a spike."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def high_water_mark(pid: int) -> int:
    """Peak RSS in bytes of a live process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmHWM for {pid}")


@dataclass(frozen=True)
class Measured:
    returncode: int
    peak_bytes: int  # the command's own process
    tree_peak_bytes: int  # the largest of it and the children it waited for (e.g. a decoder)
    seconds: float
    stdout: str


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run a command to completion. Its own peak is its high-water mark, read until it exits;
    the rusage of wait4 covers its waited-for children too, so it is reported apart."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    own = [0]

    def follow() -> None:
        while True:
            try:
                own[0] = max(own[0], high_water_mark(process.pid))
            except (OSError, LookupError, ValueError):  # exited: a zombie has no VmHWM
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    assert process.stdout is not None
    stdout = process.stdout.read()
    watcher.join(5)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    return Measured(process.returncode, own[0], usage.ru_maxrss * 1024, seconds, stdout)

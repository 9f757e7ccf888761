"""Exact peak RSS: the kernel's high-water mark of a running process (VmHWM), or the rusage of
a child that has exited (wait4), instead of sampling that could miss a spike."""

from __future__ import annotations

import os
import subprocess
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
    peak_bytes: int
    seconds: float
    stdout: str


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run a command to completion; its own peak RSS from the kernel's rusage."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(process.returncode, usage.ru_maxrss * 1024, time.monotonic() - started, stdout)

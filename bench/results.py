"""Raw results of a benchmark run: docs/bench/<name>.json holds every measured figure with the
conditions of the run (date, commit, machine, load before and after, settings), and the tables
of docs/benchmarks.md are rendered from these files only (`python -m bench.render`)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path("docs/bench")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": os.cpu_count(), "cpu": model, "ram_bytes": memory, "gpu": None}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def uncommitted() -> bool:
    """Whether the tracked files differ from the commit: the code run is then not the commit's."""
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True)  # fmt: skip
    return bool(done.stdout.strip())


def started(settings: dict[str, Any]) -> dict[str, Any]:
    """The conditions at the start of a run; `finish` adds the load after and the figures."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "uncommitted_changes": uncommitted(),
        "machine": machine(),
        "load_before": load_average(),
        "settings": settings,
    }


def finish(name: str, run: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """Write docs/bench/<name>.json and return what it holds."""
    results = {**run, "load_after": load_average(), "figures": figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def load(name: str, directory: Path = RESULTS) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / f"{name}.json").read_text())
    return data

"""`python -m bench.render`: docs/benchmarks.md from the results files in docs/bench/ only, one
section per file, in a fixed order. A benchmark without a results file has no section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.results import RESULTS, load
from bench.sections import api, box, index, pipeline, scale, transcribers

DOC = Path("docs/benchmarks.md")
# results file name -> its section's module (HEADING, render), in the document's order
SECTIONS: dict[str, ModuleType] = {
    "run": pipeline,
    "index": index,
    "box": box,
    "api": api,
    "scale": scale,
    "transcribers": transcribers,
}
RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    name: module.render for name, module in SECTIONS.items()
}
HEAD = """# Benchmarks

Every table and figure below is rendered by `python -m bench.render` from the raw results its
benchmark wrote to `docs/bench/<name>.json` in the same run: date, commit, machine, 1-minute
load average before and after, the settings it ran with, and every measured figure. A
benchmark with no results file has no section. Peak RSS is the kernel's high-water mark
(VmHWM / rusage) of each process; MB = 10⁶ bytes.
"""


def load_all(directory: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every results file in `directory` that has a renderer, by name."""
    found: dict[str, dict[str, Any]] = {}
    for name in RENDERERS:
        if (directory / f"{name}.json").exists():
            found[name] = load(name, directory)
    return found


def sections(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: RENDERERS[name](results) for name, results in found.items()}


def document(found: dict[str, dict[str, Any]]) -> str:
    return "\n".join([HEAD, *sections(found).values()]).rstrip("\n") + "\n"


def main() -> None:
    DOC.write_text(document(load_all()))


if __name__ == "__main__":
    main()

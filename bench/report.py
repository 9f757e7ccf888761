"""docs/benchmarks.md is shared: `make bench` writes its head, other benchmarks own a `## `
section each, which they replace (or append) without touching the rest."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section under `heading` in `path` (up to the next `## ` heading), or append
    it; `section` starts with `heading`."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        kept = lines[:start] + section.rstrip("\n").splitlines() + [""] + lines[end:]
    else:
        kept = [*lines, "", *section.rstrip("\n").splitlines()]
    path.write_text("\n".join(kept).rstrip("\n") + "\n")

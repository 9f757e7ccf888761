"""docs/benchmarks.md is rendered from the results files in docs/bench/ and nothing else: every
section has its results file and equals what its renderer makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import render

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "bench"
HEADINGS = {module.HEADING: name for name, module in render.SECTIONS.items()}


def sections(text: str) -> dict[str, str]:
    """The document's `## ` sections by heading, each up to the next."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = found.setdefault(line, [])
        if current is not None:
            current.append(line)
    return {heading: "\n".join(lines).strip("\n") for heading, lines in found.items()}


DOCUMENTED = sections(DOC.read_text())


@pytest.mark.parametrize("heading", list(DOCUMENTED))
def test_every_section_is_rendered_from_its_results_file(heading: str) -> None:
    assert heading in HEADINGS, f"{heading!r} is no benchmark's section"
    name = HEADINGS[heading]
    assert (RESULTS / f"{name}.json").exists(), f"{heading!r} has no docs/bench/{name}.json"
    rendered = render.RENDERERS[name](render.load_all(RESULTS)[name])
    assert DOCUMENTED[heading] == rendered.strip("\n"), "run: python -m bench.render"


def test_the_document_is_the_rendering_of_the_results_files() -> None:
    assert DOC.read_text() == render.document(render.load_all(RESULTS)), (
        "run: python -m bench.render"
    )

"""The README's settings table is the settings classes' own documentation."""

from __future__ import annotations

from pathlib import Path

from streamscribe.cli.settings_table import END, START, table

README = Path(__file__).parents[2] / "README.md"


def test_readme_settings_table_matches_the_settings_classes() -> None:
    text = README.read_text()
    documented = text[text.index(START) + len(START) : text.index(END)].strip()
    assert documented == table(), "run: make docs"

"""Placeholder."""

from __future__ import annotations

from typing import Any

HEADING = "## box"


def render(results: dict[str, Any]) -> str:
    return HEADING + "\n"

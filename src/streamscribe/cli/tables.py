"""The CLI's tables, laid out for the terminal's width at print time: ids shortened (whole with
`--json`), fixed columns as narrow as their content, and the rest of the width to the text."""

from __future__ import annotations

import shutil
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

ID_CHARS = 12
"""The characters of an id a table shows, then `…`: enough to tell media apart at a glance."""
MIN_WIDTH = 40


def console() -> Console:
    """A console as wide as the terminal now (or `COLUMNS`): not as it was at import."""
    return Console(width=max(shutil.get_terminal_size().columns, MIN_WIDTH))


def short_id(media_id: str) -> str:
    return media_id if len(media_id) <= ID_CHARS + 1 else media_id[:ID_CHARS] + "…"


def clock(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` past the hour."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def byline(row: dict[str, Any]) -> str:
    """`author · date`, as far as known."""
    return " · ".join(filter(None, (row.get("author"), row.get("published"))))


def _grid(*columns: str) -> Table:
    """No borders but a rule under the header and a blank line between rows, one space of
    padding: at 80 columns every character counts."""
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, show_lines=True, expand=True, pad_edge=False,
        padding=(0, 1),
    )  # fmt: skip
    for name in columns:
        table.add_column(name, header_style="bold")
    return table


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def search_table(hits: list[dict[str, Any]], width: int) -> Table:
    """score, start, media (title, author, date, short id) and the passage, which takes the
    rest of the width."""
    media_width = min(28, max(16, width // 5))
    table = _grid("score", "at", "media", "text")
    table.columns[1].justify = "right"
    table.columns[2].width = media_width
    table.columns[3].ratio = 1
    for hit in hits:
        media = Text()
        if hit.get("title"):
            media.append(_clip(hit["title"], 2 * media_width) + "\n", "bold")
        if line := byline(hit):
            media.append(line + "\n", "dim")
        media.append(short_id(hit["media_id"]), "cyan")
        # Text, not markup: passages and titles are anybody's words, brackets included
        table.add_row(f"{hit['score']:.3f}", clock(hit["start"]), media, Text(hit["text"]))
    return table


def status_table(rows: list[dict[str, Any]]) -> Table:
    """media (short id), state, chunks stored of total, and title (or failure, or URL), which
    takes the rest of the width."""
    table = _grid("media", "state", "chunks", "title / reason")
    table.columns[0].no_wrap = True
    table.columns[3].ratio = 1
    for row in rows:
        chunks = row["chunks"]
        state = " ".join(filter(None, (row["state"], row["source"], row["language"])))
        table.add_row(
            Text(short_id(row["media_id"]), "cyan"),
            state,
            f"{chunks['stored']}/{chunks['total'] or '?'}",
            _about(row),
        )
    return table


def _about(row: dict[str, Any]) -> Text:
    """A failure's reason first (it is what to act on), then the title and byline, else the
    URL."""
    about = Text()
    if failure := row.get("failure"):
        about.append(f"{failure['reason']}: {failure['detail']}", "red")
        about.append("\n")
    if row.get("title"):
        about.append(row["title"], "bold")
        if line := byline(row):
            about.append(f"\n{line}", "dim")
    else:
        about.append(row.get("source_url") or "")
    if uncovered := (row.get("speech") or {}).get("uncovered_seconds"):
        about.append(f"\n{uncovered:g} s of speech without words", "yellow")
    about.rstrip()
    return about

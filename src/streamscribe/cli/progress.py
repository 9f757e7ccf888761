"""`submit --wait`: follow one run of a media through the HTTP API until indexed or failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from streamscribe.cli.client import ApiClient

POLL_SECONDS = 0.5


async def follow(api: ApiClient, media_id: str, run: str) -> AsyncIterator[dict[str, Any]]:
    """The media's record each time it changes, once the ledger has this run or a newer one
    (an older run's `indexed` is not this submission's)."""
    seen: dict[str, Any] | None = None
    while True:
        record = await asyncio.to_thread(api.media, media_id)
        if record is not None and record["run"] >= run and record != seen:
            seen = record
            yield record
        await asyncio.sleep(POLL_SECONDS)


async def show_progress(
    records: AsyncIterator[dict[str, Any]], timeout: float, out: Console
) -> int:
    """0 once indexed, 1 once failed (the reason printed), 3 on timeout."""
    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        bar = progress.add_task("indexed", total=None)
        try:
            async with asyncio.timeout(timeout):
                async for record in records:
                    chunks = record["chunks"]
                    progress.update(bar, completed=chunks["stored"], total=chunks["total"])
                    if record["state"] == "indexed":
                        out.print(f"indexed {record['media_id']}: {record['passages']} passages")
                        return 0
                    if record["state"] == "failed" and record["failure"]:
                        f = record["failure"]
                        # verbatim: yt-dlp's "[generic]" is not markup
                        reason = f" at {f['stage']}: {f['reason']}: {f['detail']}"
                        out.print(Text.assemble(("failed", "red"), reason), highlight=False)
                        return 1
        except TimeoutError:
            out.print(f"[yellow]still not indexed after {timeout:.0f}s[/yellow]")
            return 3
    return 1

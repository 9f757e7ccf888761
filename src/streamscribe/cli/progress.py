"""`submit --wait`: a progress bar per stage until the media is indexed or failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streamscribe.cli.tracker import MediaState


async def show_progress(states: AsyncIterator[MediaState], timeout: float, out: Console) -> int:
    """0 once indexed, 1 once failed (the reason printed), 3 on timeout."""
    columns = (
        TextColumn("{task.description:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        bars = {
            stage: progress.add_task(stage, total=None)
            for stage in ("ingest", "transcribe", "index")
        }
        try:
            async with asyncio.timeout(timeout):
                async for state in states:
                    total = state.chunk_count
                    progress.update(bars["ingest"], completed=len(state.audio), total=total)
                    progress.update(
                        bars["transcribe"], completed=len(state.transcribed), total=total
                    )
                    if state.indexed:
                        progress.update(bars["index"], completed=total, total=total)
                        out.print(f"indexed {state.media_id}")
                        return 0
                    if state.failed and state.failure:
                        f = state.failure
                        out.print(
                            f"[red]failed[/red] at {f['stage']}: {f['reason']}: {f['detail']}"
                        )
                        return 1
        except TimeoutError:
            out.print(f"[yellow]still not indexed after {timeout:.0f}s[/yellow]")
            return 3
    return 1

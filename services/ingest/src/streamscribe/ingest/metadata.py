"""What a media says about itself: the site's page (yt-dlp's probe) or a file's name and tags,
as `MediaMetadata`, which the chunks carry to the ledger.

A file's tags are read by a child process (`file_tags.py`), as its audio is decoded by one
(`decoder.py`): libav parses hostile bytes there, so a crash or a hang costs the tags, never
the process that asked (the CLI, or the API for an upload). Tags are optional: any failure
reading them leaves the file's name as its title.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from datetime import date
from pathlib import Path, PurePath
from typing import Any

from streamscribe.common.events import MediaMetadata

log = logging.getLogger(__name__)

TAGS_TIMEOUT_SECONDS = 10.0
_MAX_TAGS_OUTPUT = 64 * 1024
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")  # 2024-01-31, 20240131, 2024-01-31T10:00


def from_probe(info: dict[str, Any]) -> MediaMetadata:
    """The fields of yt-dlp's info dict (a site's page, or a direct link's file name)."""
    return MediaMetadata(
        title=info.get("title") or info.get("fulltitle"),
        author=info.get("uploader") or info.get("channel") or info.get("creator"),
        published=iso_date(info.get("upload_date") or info.get("release_date")),
        duration=info.get("duration"),
        webpage_url=info.get("webpage_url"),
        thumbnail_url=info.get("thumbnail"),
    )


def iso_date(value: object) -> date | None:
    """A date from `YYYYMMDD` (yt-dlp) or `YYYY-MM-DD...` (tags); None for a bare year or junk."""
    found = _DATE.match(str(value).strip()) if value else None
    if found is None:
        return None
    try:
        return date(*map(int, found.groups()))
    except ValueError:
        return None


def from_tags(tags: dict[str, Any]) -> MediaMetadata:
    """The fields of a file's tags (keys lower-cased by `file_tags.py`)."""
    return MediaMetadata(
        title=tags.get("title"),
        author=tags.get("artist") or tags.get("album_artist") or tags.get("author"),
        published=iso_date(tags.get("date") or tags.get("creation_time")),
        duration=tags.get("duration"),
    )


async def from_file(path: Path, name: str | None = None) -> MediaMetadata:
    """A file's tags, with its name (`name`, else the path's) as the title when it has none."""
    named = MediaMetadata(title=PurePath(name or path.name).stem or None)
    return from_tags(await read_tags(path)).over(named)


async def read_tags(path: Path) -> dict[str, Any]:
    """The tags of `path`, read by a child process; none when it fails, in any way."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamscribe.ingest.file_tags", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(child.communicate(), TAGS_TIMEOUT_SECONDS)
    except TimeoutError:
        child.kill()
        await child.wait()
        log.info("reading the tags of %s took over %ss: none taken", path, TAGS_TIMEOUT_SECONDS)
        return {}
    if child.returncode != 0 or len(output) > _MAX_TAGS_OUTPUT:
        return {}
    try:
        tags = json.loads(output)
    except ValueError:
        return {}
    return tags if isinstance(tags, dict) else {}

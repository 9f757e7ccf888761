"""A real browser for the page's tests: Debian's chromium driven by Playwright (nothing
downloaded), and axe-core (from npm, pinned in tests/browser/package-lock.json) run in it."""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.conftest import require_tool

PACKAGES = Path(__file__).parents[1] / "browser"
AXE = PACKAGES / "node_modules" / "axe-core" / "axe.min.js"
# Headless on a closed network: without these chromium waits on sync, updates and first-run
# dialogs it can never reach.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FAILING_IMPACTS = {"serious", "critical"}


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[BrowserContext]:
    """A headless chromium with a fresh profile, gone afterwards."""
    executable = require_tool("chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=ARGS,
            viewport={"width": width, "height": height},
            bypass_csp=True,  # the page's policy forbids inline scripts: axe is injected as one
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


def axe_source() -> str:
    """axe-core's script; `npm ci` installs it the first time (`make test` does it before)."""
    if not AXE.exists():
        npm = require_tool("npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PACKAGES, check=True)
    return AXE.read_text()


def serious_violations(page: Page, axe: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=axe)
    results: dict[str, Any] = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [node["target"] for node in v["nodes"]][:5]}
        for v in results["violations"]
        if v["impact"] in FAILING_IMPACTS
    ]  # fmt: skip


class RangeHandler(SimpleHTTPRequestHandler):
    """Files with byte ranges, as any media server answers: a browser seeks in a media only
    where the server serves ranges (Python's own handler does not)."""

    def send_head(self) -> Any:
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if wanted is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        first = int(wanted.group(1))
        last = min(int(wanted.group(2) or size - 1), size - 1)
        if first > last:
            self.send_error(416)
            return None
        body = path.open("rb")
        body.seek(first)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        return _Limited(body, last - first + 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Limited:
    """A file read up to `left` bytes (what `copyfile` sends of a range)."""

    def __init__(self, file: Any, left: int) -> None:
        self.file, self.left = file, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data: bytes = self.file.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.file.close()


@contextmanager
def serving_ranges(root: Path) -> Iterator[str]:
    """`root`'s files on a loopback port, with byte ranges; yields the base URL."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""The page in a real browser (Debian's chromium, driven by Playwright) against the session's
running pipeline, which asks for keys: the key entered once, a URL submitted through the
library's form, its progress bar moved by the page's script until indexed, a spoken sentence
searched, the hit opened with the player at its second, another sentence clicked and played from
there. Then each page at 1280 and 390 px: screenshots for the README, and axe-core's check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.integration.browser import axe_source, chromium, serious_violations, serving_ranges
from tests.integration.conftest import MediaServer, Pipeline
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
WIDTHS = {1280: 860, 390: 844}  # a laptop's and a phone's viewport
INDEXED_TIMEOUT_MS = 120_000
# the player's time is within 1 s of `start` (the media fragment, or the page's script, put it
# there; it may have played on since, so not before it)
NEAR = "([s]) => { const p = document.getElementById('player'); return p.readyState >= 1 && p.currentTime >= s - 0.05 && p.currentTime < s + 1; }"  # noqa: E501


@pytest.fixture
def media_base(media_server: MediaServer) -> Iterator[str]:
    """The media server's files, with byte ranges (a browser seeks only where it gets them)."""
    with serving_ranges(media_server.root) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium(1280, WIDTHS[1280]) as context:
        context.set_default_timeout(30_000)
        yield context


def test_submit_index_search_open_and_seek(
    pipeline: Pipeline, media_base: str, short_speech: Speech, browser: BrowserContext
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    base = pipeline.api_url
    _give_the_key(page, base, pipeline.env["STREAMSCRIBE_API_KEY"])
    media_id = _submit(page, f"{media_base}/{short_speech.path.name}?page=1")
    _indexed_by_the_script(page, media_id)
    failed_id = _submit(page, f"{media_base}/page.html?page=1")
    failed = page.locator(f'li[data-media-id="{failed_id}"]')
    expect(failed).to_have_attribute("data-state", "failed", timeout=INDEXED_TIMEOUT_MS)
    expect(failed.locator(".error")).to_contain_text("(ingest)")

    sentence, spoken_at = short_speech.sentence_at(1)
    hit_start = _search_and_open(page, sentence, media_id)
    assert hit_start >= spoken_at - 1.5, (hit_start, spoken_at)
    page.wait_for_function(NEAR, arg=[hit_start], timeout=30_000)
    at_the_hit = page.url

    other = _another_sentence(page, hit_start)
    other.click()
    page.wait_for_function(NEAR, arg=[_start(other)], timeout=10_000)
    expect(other).to_have_attribute("aria-current", "true")
    # and from the keyboard: Enter on a sentence (a link) seeks as a click does
    back = _another_sentence(page, _start(other))
    back.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(NEAR, arg=[_start(back)], timeout=10_000)
    expect(back).to_have_attribute("aria-current", "true")

    _screenshots_and_axe(page, f"{base}/?q=bakery+on+the+corner", at_the_hit, f"{base}/library")
    assert errors == []


def _start(element: Locator) -> float:
    return float(element.get_attribute("data-start") or "nan")


def _give_the_key(page: Page, base: str, key: str) -> None:
    """The stack asks for keys: the first page is the key form; the key is kept afterwards."""
    response = page.goto(f"{base}/library")
    assert response is not None
    assert response.status == 401
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page).to_have_url(f"{base}/library")
    expect(page.get_by_role("heading", name="Library", level=1)).to_be_visible()


def _submit(page: Page, url: str) -> str:
    page.get_by_label("Media URL to index").fill(url)
    page.get_by_role("button", name="Submit").click()
    expect(page).to_have_url(re.compile(r"/library\?submitted=m-"))
    found = re.search(r"submitted=([\w-]+)", page.url)
    assert found is not None
    return found.group(1)


def _indexed_by_the_script(page: Page, media_id: str) -> None:
    """The row reaches indexed, its bar full, without the page being loaded again."""
    page.evaluate("() => { window.loadedOnce = true; }")
    row = page.locator(f'li[data-media-id="{media_id}"]')
    expect(row).to_have_attribute("data-state", "indexed", timeout=INDEXED_TIMEOUT_MS)
    bar = row.locator("progress")
    expect(bar).to_have_js_property("position", 1.0)  # value == max, both known
    expect(row.locator(".state")).to_have_text("Indexed")
    assert page.evaluate("() => window.loadedOnce === true"), "the page was reloaded"


def _search_and_open(page: Page, sentence: str, media_id: str) -> float:
    """Search the sentence from the search page; open this media's first hit; its start."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Search").click()
    page.get_by_label("Words or a sentence").fill(sentence)
    page.get_by_role("button", name="Search").click()
    hit = page.locator(f'li.hit[data-media-id="{media_id}"]').first
    expect(hit.locator("mark").first).to_be_visible()
    link = hit.get_by_role("link")
    start = _start(link)
    link.click()
    expect(page).to_have_url(re.compile(rf"/watch/{media_id}\?t="))
    return start


def _another_sentence(page: Page, hit_start: float) -> Locator:
    lines = page.locator(".transcript a[data-start]")
    expect(lines.first).to_be_visible()
    for index in range(lines.count()):
        line = lines.nth(index)
        if abs(_start(line) - hit_start) > 2:
            return line
    pytest.fail(f"the transcript has no other sentence: {lines.all_inner_texts()}")


def _screenshots_and_axe(page: Page, search: str, watch: str, library: str) -> None:
    """Each page at each width: a screenshot under docs/screenshots, and no serious or critical
    accessibility violation."""
    axe = axe_source()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    found = {}
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        for name, url in (("search", search), ("media", watch), ("library", library)):
            page.goto(url)
            page.wait_for_load_state("load")
            page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png")
            found[f"{name} at {width}px"] = serious_violations(page, axe)
    assert not any(found.values()), found

"""Captions first: yt-dlp's generic extractor finds a page's `<track kind="captions">`, ingest
takes it instead of the audio (prefer, only) or not (never); the track goes through the egress
proxy's URL policy; its text is cleaned of markup and of the rolling duplicates of automatic
captions."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.captions import CaptionsMode, Cue, choose_track, chunks, parse
from streamscribe.ingest.downloader import CaptionChoice, Captions, DownloadLimits, download
from streamscribe.ingest.urlguard import UrlPolicy
from tests import hostile_servers
from tests.hostile_servers import SITE_HOST, Canary, Site

POLICY = UrlPolicy(allowed_hosts=frozenset({SITE_HOST}))
LIMITS = DownloadLimits(
    max_bytes=2_000_000,
    max_probe_bytes=1_000_000,
    max_duration_seconds=3600,
    max_seconds=20,
    socket_timeout_seconds=5,
)
VTT = """WEBVTT
Kind: captions

NOTE a comment, not a cue

intro
00:00:00.500 --> 00:00:02.000 align:start position:0%
<v Narrator>Fish &amp; <b>chips</b>, please.

00:02.000 --> 00:04.250
Second <00:02.500><c>line</c>.
"""


def page(track: str) -> str:
    return (
        '<html><body><video controls src="tone.wav">'
        f'<track kind="captions" srclang="en" label="English" src="{track}"></video></body></html>'
    )


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with hostile_servers.canary() as served:
        yield served


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, canary: Canary) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("captioned")
    with wave.open(str(root / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(32000))
    (root / "talk.vtt").write_text(VTT)
    (root / "captioned.html").write_text(page("talk.vtt"))
    (root / "elsewhere.html").write_text(page(canary.url(path="/talk.vtt")))
    (root / "missing.html").write_text(page("gone.vtt"))
    with hostile_servers.site(root) as served:
        yield served


def fetch(url: str, job_dir: Path, mode: CaptionsMode) -> Path | Captions:
    return download(url, job_dir, LIMITS, POLICY, CaptionChoice(mode, "en", False))


def test_a_page_track_is_taken_instead_of_the_audio(site: Site, tmp_path: Path) -> None:
    for mode in (CaptionsMode.PREFER, CaptionsMode.ONLY):
        found = fetch(site.url("captioned.html"), tmp_path, mode)
        assert isinstance(found, Captions)
        assert (found.track.language, found.track.automatic) == ("en", False)
        assert [(c.start, c.end, c.text) for c in found.cues] == [
            (0.5, 2.0, "Fish & chips, please."),
            (2.0, 4.25, "Second line."),
        ]
        assert list(tmp_path.iterdir()) == []  # no audio downloaded


def test_never_downloads_the_audio(site: Site, tmp_path: Path) -> None:
    found = fetch(site.url("captioned.html"), tmp_path, CaptionsMode.NEVER)
    assert isinstance(found, Path)
    assert found.suffix == ".wav"


def test_only_fails_without_captions_and_prefer_takes_the_audio(site: Site, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        fetch(site.url("tone.wav"), tmp_path, CaptionsMode.ONLY)
    assert caught.value.reason is Reason.NO_CAPTIONS
    assert "STREAMSCRIBE_INGEST__CAPTIONS" in caught.value.detail
    assert isinstance(fetch(site.url("tone.wav"), tmp_path, CaptionsMode.PREFER), Path)


def test_a_track_that_is_not_there_counts_as_none(site: Site, tmp_path: Path) -> None:
    assert isinstance(fetch(site.url("missing.html"), tmp_path, CaptionsMode.PREFER), Path)


def test_a_track_elsewhere_meets_the_url_policy(site: Site, canary: Canary, tmp_path: Path) -> None:
    with pytest.raises(MediaError) as caught:
        fetch(site.url("elsewhere.html"), tmp_path, CaptionsMode.PREFER)
    assert caught.value.reason is Reason.REFUSED_URL
    assert canary.connections == 0


def test_rolling_automatic_captions_keep_each_word_once() -> None:
    rolling = """WEBVTT

00:00:00.000 --> 00:00:02.000
<c>the</c><00:00:00.400><c> council</c><00:00:00.900><c> met</c>

00:00:02.000 --> 00:00:02.010
the council met

00:00:02.010 --> 00:00:04.000
the council met
on<00:00:02.300><c> tuesday</c>

00:00:04.000 --> 00:00:04.010
on tuesday

00:00:04.010 --> 00:00:06.000
on tuesday
on tuesday and agreed
"""
    assert [(c.start, c.text) for c in parse(rolling)] == [
        (0.0, "the council met"),
        (2.01, "on tuesday"),
        (4.01, "and agreed"),
    ]


def test_srt_with_its_markup_parses_too() -> None:
    srt = (
        "1\r\n00:00:01,000 --> 00:00:02,500\r\n{\\an8}<i>Hello</i>\r\n\r\n"
        "2\r\n00:01:02,000 --> 00:01:03,000\r\nAgain\r\n"
    )
    assert parse(srt) == [Cue(1.0, 2.5, "Hello"), Cue(62.0, 63.0, "Again")]


def test_manual_captions_come_first_and_regional_variants_count() -> None:
    info = {
        "subtitles": {"de": [{"ext": "vtt", "url": "d"}], "en-GB": [{"ext": "srt", "url": "g"}]},
        "automatic_captions": {"en": [{"ext": "vtt", "url": "a"}]},
    }
    manual = choose_track(info, "en", automatic=True)
    assert manual is not None
    assert (manual.url, manual.language, manual.automatic) == ("g", "en", False)
    automatic = choose_track({**info, "subtitles": {}}, "en", automatic=True)
    assert automatic is not None
    assert automatic.automatic
    assert choose_track({**info, "subtitles": {}}, "en", automatic=False) is None
    assert choose_track(info, "fr", automatic=True) is None


def test_cues_become_transcript_chunks_of_the_chunk_length() -> None:
    cues = [Cue(i * 4.0, i * 4.0 + 3, f"cue {i}") for i in range(20)]
    grouped = chunks(cues, 30)
    assert [len(segments) for _, _, segments in grouped] == [8, 8, 4]
    assert grouped[0][:2] == (0.0, 31.0)
    assert [s.text for _, _, segs in grouped for s in segs] == [c.text for c in cues]

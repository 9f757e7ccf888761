"""Acceptance of transcripts people use, on the session pipeline: a page's own captions become
the transcript (no audio reaches transcribe), `never` transcribes the audio, `only` fails a page
without captions, and a language the English-only model cannot transcribe fails at once."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import MediaServer, Pipeline, read_topic
from tests.integration.speech import Speech, words
from tests.integration.test_hostile_input import submit_all, wait_all

pytestmark = pytest.mark.integration

# What the captions say: nothing like the speech the page's audio holds.
CAPTIONS = [
    (0.5, 3.0, "Penguins waddle across the frozen harbour at dawn."),
    (3.2, 6.0, "Nobody expected the violin to sound so bright."),
]


@pytest.fixture(scope="module")
def captioned(media_server: MediaServer, short_speech: Speech) -> str:
    """A page whose video plays the short speech, with English captions of other words."""
    cues = "".join(
        f"{start // 60:02.0f}:{start % 60:06.3f} --> {end // 60:02.0f}:{end % 60:06.3f}\n"
        f"<v Narrator>{text}\n\n"
        for start, end, text in CAPTIONS
    )
    (media_server.root / "captions.vtt").write_text(f"WEBVTT\n\n{cues}")
    (media_server.root / "captioned.html").write_text(
        f'<html><body><video controls src="{short_speech.path.name}">'
        '<track kind="captions" srclang="en" label="English" src="captions.vtt">'
        "</video></body></html>"
    )
    return media_server.url("captioned.html")


def keys(pipeline: Pipeline, topic: str, media_id: str) -> list[bytes]:
    return [
        record.key
        for record in read_topic(pipeline.bootstrap, pipeline.topic(topic))
        if record.key and record.key.decode().startswith(media_id)
    ]


def test_captions_first_never_and_only(
    pipeline: Pipeline, media_server: MediaServer, captioned: str, short_speech: Speech
) -> None:
    audio = media_server.url(short_speech.path.name)
    prefer, never, only = submit_all(pipeline, [captioned, f"{captioned}?audio", f"{audio}?only"],
                                     captions=[None, "never", "only"])  # fmt: skip
    ends = dict(
        zip((prefer, never, only), wait_all(pipeline, [prefer, never, only], 600), strict=True)
    )

    # prefer (the default): the captions are the transcript; no audio reaches transcribe
    assert (ends[prefer]["state"], ends[prefer]["source"], ends[prefer]["language"]) == (
        "indexed", "captions", "en"
    )  # fmt: skip
    text = pipeline.cli("transcript", prefer)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [caption for _, _, caption in CAPTIONS]
    exported = json.loads(pipeline.cli("transcript", prefer, "--format", "json").stdout)
    assert exported["source"] == "captions"
    assert [s["start"] for s in exported["segments"]] == [start for start, _, _ in CAPTIONS]
    assert keys(pipeline, "media.audio", prefer) == []
    hits = json.loads(pipeline.cli("search", "penguins frozen harbour", "--json").stdout)
    assert [(h["source"], h["language"]) for h in hits if h["media_id"] == prefer][:1] == [
        ("captions", "en")
    ]

    # never: the audio is transcribed, whatever captions the page has
    assert (ends[never]["state"], ends[never]["source"]) == ("indexed", "asr")
    spoken = pipeline.cli("transcript", never).stdout
    assert "bakery" in words(spoken)
    assert "penguins" not in words(spoken)
    assert keys(pipeline, "media.audio", never)

    # only, and no captions: failed, nothing downloaded
    assert ends[only]["state"] == "failed"
    assert ends[only]["failure"]["reason"] == "no_captions"
    assert keys(pipeline, "media.audio", only) == []


def test_a_language_the_model_does_not_know_fails_at_once(
    pipeline: Pipeline, media_server: MediaServer, short_speech: Speech
) -> None:
    url = media_server.url(short_speech.path.name) + "?lang=de"
    result = pipeline.cli("submit", url, "--language", "de", "--wait", timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    media_id = result.stdout.strip().splitlines()[-1]
    status = pipeline.status(media_id)
    assert status is not None
    assert status["state"] == "failed"
    assert status["failure"]["reason"] == "unsupported_language"
    assert "STREAMSCRIBE_TRANSCRIBE__MODEL" in status["failure"]["detail"]
    assert "STREAMSCRIBE_TRANSCRIBE__MODEL" in result.stderr
    assert keys(pipeline, "media.transcript", media_id) == []  # nothing transcribed

from __future__ import annotations

import json

import pytest

from streamscribe.common.errors import InvalidEventError
from streamscribe.common.events import (
    AudioChunk,
    MediaRequested,
    Transcript,
    encode_event,
    media_id_for_url,
    normalise_url,
    parse_event,
)


def test_a_bare_url_is_a_valid_request_with_a_derived_id() -> None:
    event = parse_event(MediaRequested, b'{"url": "https://Example.com:443/a.mp3#t=3"}')
    assert event.resolved_id == media_id_for_url("https://example.com/a.mp3")
    assert event.version == 1


def test_a_given_media_id_wins() -> None:
    event = parse_event(MediaRequested, b'{"url": "https://e.com/a", "media_id": "talk-1"}')
    assert event.resolved_id == "talk-1"


def test_spellings_of_one_url_share_an_id_and_different_urls_do_not() -> None:
    assert normalise_url("HTTP://E.com:80/x?q=1") == normalise_url("http://e.com/x?q=1#frag")
    assert media_id_for_url("http://e.com/x?q=1") != media_id_for_url("http://e.com/x?q=2")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"url": 42}',
        b'{"url": ""}',
        b'{"url": "http://e.com", "media_id": "../../etc"}',
        b'{"url": "http://e.com", "language": "english!"}',
        b'{"url": "http://e.com", "version": 99}',
        b'{"url": "' + b"a" * (5 * 1024 * 1024) + b'"}',
    ],
)
def test_invalid_requests_are_rejected_with_a_reason(body: bytes) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(MediaRequested, body)
    assert str(info.value)


def test_audio_travels_as_base64_json_and_round_trips() -> None:
    chunk = AudioChunk(
        media_id="m-1",
        seq=3,
        start=90.0,
        end=120.0,
        final=True,
        chunk_count=4,
        source_url="http://e.com/a",
        audio=b"\x00\xffOggS",
    )
    wire = encode_event(chunk)
    assert json.loads(wire)["audio"] == "AP9PZ2dT"
    assert parse_event(AudioChunk, wire) == chunk
    assert chunk.chunk_id == "m-1:000003"


def test_transcript_needs_segments() -> None:
    with pytest.raises(InvalidEventError, match="segments"):
        parse_event(
            Transcript,
            b'{"media_id": "m", "seq": 0, "start": 0, "end": 1, '
            b'"source_url": "u", "language": "en"}',
        )


def test_a_callback_url_is_optional_and_bounded() -> None:
    assert parse_event(MediaRequested, b'{"url": "https://e.com/a"}').callback_url is None
    body = b'{"url": "https://e.com/a", "callback_url": "https://hooks.example.org/x"}'
    assert parse_event(MediaRequested, body).callback_url == "https://hooks.example.org/x"
    too_long = b'{"url": "https://e.com/a", "callback_url": "https://h/' + b"x" * 4096 + b'"}'
    with pytest.raises(InvalidEventError, match="callback_url"):
        parse_event(MediaRequested, too_long)

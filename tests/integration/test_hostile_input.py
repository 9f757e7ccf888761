"""Acceptance of "nothing let in" on the session pipeline, whose ingest allows only 127.0.0.1:
hostile URLs end `refused_url` and never reach the canary on 127.0.0.2; malformed media and a
decompression bomb end failed with a reason; the worker then still indexes a good media, with
its memory under its ceiling.

Everything is submitted first and waited for together, which keeps the wall time low."""

from __future__ import annotations

import asyncio
import json
import random
import struct
import subprocess
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from streamscribe.common.events import MediaRequested, encode_event
from tests import hostile_servers
from tests.conftest import require_tool
from tests.hostile_servers import CANARY_SPELLINGS, SITE_HOST, Canary, Site
from tests.integration.conftest import MediaServer, Pipeline, wait_for
from tests.integration.speech import Speech

pytestmark = pytest.mark.integration

# Ingest's resident memory when the pipeline sets no ceiling: it loads no model.
INGEST_BUDGET_BYTES = 512 * 2**20

# The canary's address as a URL may spell it.


def hostile_urls(site: Site, canary: Canary) -> list[str]:
    allowed = f"{SITE_HOST}:{site.port}"
    return [
        # the canary in every spelling, submitted as is
        *(canary.url(host) for host in CANARY_SPELLINGS),
        # other loopback, metadata, private, unspecified and multicast addresses
        f"http://[::1]:{canary.port}/talk.mp3",
        f"http://0.0.0.0:{canary.port}/talk.mp3",
        f"http://[::]:{canary.port}/talk.mp3",
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/talk.mp3",
        "http://172.16.0.1/talk.mp3",
        "http://192.168.1.1/talk.mp3",
        "http://100.64.0.1/talk.mp3",
        "http://224.0.0.1/talk.mp3",
        # schemes and credentials, even towards the allowed host
        "file:///etc/passwd",
        f"ftp://{allowed}/tone.wav",
        f"gopher://{allowed}/",
        f"http://user:secret@{allowed}/tone.wav",
        # the allowed site sends yt-dlp elsewhere: every hop is checked
        site.url("redirect", to=canary.url()),
        site.url("redirect", to=canary.url("2130706434")),
        site.url("redirect", to=canary.url("[::ffff:127.0.0.2]")),
        site.url("redirect", to=canary.url("0x7f000002"), code="307"),
        site.url("redirect", to=canary.url(scheme="https")),
        site.url("redirect", to="http://169.254.169.254/latest/meta-data/"),
        site.url("redirect", to="http://10.0.0.1/talk.mp3"),
        site.url("redirect", to=f"http://[::1]:{canary.port}/"),
        site.url("redirect", to="file:///etc/passwd"),
        site.url("redirect", to=f"http://user:secret@{allowed}/tone.wav"),
        site.url("redirect", to=site.url("redirect", to=canary.url())),
        site.url("loop"),
        site.url("page", media=canary.url()),
        site.url("page", media=canary.url("2130706434")),
        site.url("refresh", to=canary.url()),
    ]


# Malformed media served by the allowed site, and the reason each must fail with.
MALFORMED = {
    "empty.mp3": "decode_error",
    "random.mp3": "decode_error",
    "random.wav": "decode_error",
    "random.ogg": "decode_error",
    "text.mp3": "decode_error",
    "text.txt": "unsupported_media",  # served as text/plain
    "header-only.mp3": "decode_error",
    "header-only.wav": "decode_error",
    "header-only.ogg": "decode_error",
    "riff-only.wav": "decode_error",
    "zero-channels.wav": "decode_error",
    "thousand-channels.wav": "decode_error",
    "zero-rate.wav": "decode_error",
    "truncated.m4a": "decode_error",
    "truncated.flac": "decode_error",
    "video-only.mp4": "no_audio",
    "image.mp3": "no_audio",
    "bomb.flac": "too_long",  # an hour of silence in 100 kB; the pipeline's limit is 300 s
}
# Damaged but still playable: ffmpeg decodes what is there, as a media player would. These
# must end (either way) without harming the worker; they are not refused.
PLAYABLE = ["huge-claim.wav", "cut-mid-stream.mp3", "corrupt-pages.ogg"]


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg, sox = require_tool("ffmpeg"), require_tool("sox")
    root = tmp_path_factory.mktemp("hostile")
    tone = root / "tone.wav"
    _write_wav(tone, _tone(10))
    for name, args in {
        "tone.mp3": "-c:a libmp3lame -b:a 64k",
        "tone.ogg": "-c:a libvorbis",
        "tone.m4a": "-c:a aac",
        "tone.flac": "-c:a flac",
    }.items():
        subprocess.run([ffmpeg, "-v", "error", "-i", tone, *args.split(), root / name], check=True)
    lavfi = [ffmpeg, "-v", "error", "-f", "lavfi", "-i"]
    subprocess.run([*lavfi, "testsrc=duration=1:size=64x64:rate=5", "-an", "-c:v", "mpeg4",
                    root / "video-only.mp4"], check=True)  # fmt: skip
    subprocess.run([*lavfi, "testsrc=size=32x32", "-frames:v", "1", root / "image.png"], check=True)
    subprocess.run([sox, "-n", "-r", "8000", "-c", "1", root / "bomb.flac", "trim", "0", "3600"],
                   check=True)  # fmt: skip
    _write_malformed(root)
    return root


def _tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()


def _write_wav(path: Path, frames: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(frames)


def _wav(channels: int, rate: int, data: bytes, declared: int | None = None) -> bytes:
    """A PCM WAV whose header says what it is asked to, true or not."""
    block = max(channels, 1) * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    size = len(data) if declared is None else declared
    return (
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", size) + data
    )  # fmt: skip


def _write_malformed(root: Path) -> None:
    noise = random.Random(11)
    tone = root / "tone.wav"
    mp3, ogg = (root / "tone.mp3").read_bytes(), (root / "tone.ogg").read_bytes()
    m4a, flac = (root / "tone.m4a").read_bytes(), (root / "tone.flac").read_bytes()
    files = {
        "empty.mp3": b"",
        "random.mp3": noise.randbytes(30_000),
        "random.wav": noise.randbytes(30_000),
        "random.ogg": noise.randbytes(30_000),
        "text.mp3": b"This is not audio at all.\n" * 100,
        "text.txt": b"This is not audio at all.\n" * 100,
        "header-only.mp3": mp3[:64],
        "header-only.wav": tone.read_bytes()[:40],
        "header-only.ogg": ogg[:200],
        "riff-only.wav": b"RIFF\xff\xff\xff\xffWAVE",
        "zero-channels.wav": _wav(0, 16000, bytes(32_000)),
        "thousand-channels.wav": _wav(1000, 16000, bytes(32_000)),
        "zero-rate.wav": _wav(1, 0, bytes(32_000)),
        "truncated.m4a": m4a[: len(m4a) // 2],  # its index (moov) comes last
        "truncated.flac": flac[: len(flac) // 2],
        "image.mp3": (root / "image.png").read_bytes(),
        "huge-claim.wav": _wav(1, 16000, _tone(2), declared=0x7FFF_0000),
        "cut-mid-stream.mp3": mp3[: len(mp3) // 2],
        "corrupt-pages.ogg": ogg[:4000] + noise.randbytes(len(ogg) - 4000),
    }
    for name, content in files.items():
        (root / name).write_bytes(content)


@pytest.fixture(scope="module")
def site(hostile_root: Path) -> Iterator[Site]:
    with hostile_servers.site(hostile_root) as served:
        yield served


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with hostile_servers.canary() as served:
        yield served


def submit_all(
    pipeline: Pipeline, urls: list[str], captions: list[str | None] | None = None
) -> list[str]:
    """Publish a `media.requested` for each URL (with its `captions` mode, if given) with one
    producer; return the media ids."""
    modes = captions or [None] * len(urls)
    events = [
        MediaRequested.model_validate({"url": url, "captions": mode})
        for url, mode in zip(urls, modes, strict=True)
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    pipeline.topic("media.requested"),
                    encode_event(event),
                    key=event.resolved_id.encode(),
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    return [event.resolved_id for event in events]


def wait_all(pipeline: Pipeline, media_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """The status of each media (in order) once every one has ended, failed or indexed."""

    def ended() -> list[dict[str, Any]] | None:
        result = pipeline.cli("status", "--json", timeout=60)
        if result.returncode != 0:
            return None
        rows = {row["media_id"]: row for row in json.loads(result.stdout)}
        ours = [rows.get(i, {}) for i in media_ids]
        return ours if all(r.get("state") in {"failed", "indexed"} for r in ours) else None

    statuses: list[dict[str, Any]] = wait_for(ended, timeout, "every media to end", 3)
    return statuses


def ingest_memory(pipeline: Pipeline) -> tuple[float, float]:
    """(peak RSS, ceiling) of the ingest worker, from its /metrics; ceiling 0 when none is set."""
    port = pipeline.env["STREAMSCRIBE_INGEST__HTTP_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        samples = dict(
            line.rsplit(" ", 1)
            for line in response.read().decode().splitlines()
            if line and not line.startswith("#")
        )
    peak = (
        samples.get("streamscribe_peak_resident_memory_bytes")
        or samples["process_resident_memory_bytes"]
    )
    return float(peak), float(samples.get("streamscribe_memory_ceiling_bytes", "0"))


def test_hostile_urls_and_media_fail_and_the_worker_keeps_serving(
    pipeline: Pipeline,
    media_server: MediaServer,
    short_speech: Speech,
    site: Site,
    canary: Canary,
) -> None:
    hostile = hostile_urls(site, canary)
    media = {site.url(name): reason for name, reason in MALFORMED.items()}
    playable = [site.url(name) for name in PLAYABLE]
    assert len(hostile) >= 30
    assert len(media) >= 11
    urls = hostile + list(media) + playable
    assert len(set(urls)) == len(urls)

    ends = dict(zip(urls, wait_all(pipeline, submit_all(pipeline, urls), 600), strict=True))

    failures = {url: ends[url]["failure"] or {} for url in hostile + list(media)}
    assert {url: failures[url].get("reason") for url in hostile} == dict.fromkeys(
        hostile, "refused_url"
    )
    assert canary.connections == 0
    assert {url: failures[url].get("reason") for url in media} == media
    assert all(failures[url].get("detail") for url in failures)
    assert "text/plain" in failures[site.url("text.txt")]["detail"]
    # no reason names a path of the workers' own
    assert not [url for url in failures if str(pipeline.data_dir) in failures[url]["detail"]]
    assert not [url for url in failures if "/tmp/" in failures[url]["detail"]]

    # The worker keeps serving: a good media submitted after all of that is indexed.
    good = pipeline.cli("submit", media_server.url(short_speech.path.name) + "?after=hostile",
                        "--wait", timeout=600)  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "indexed" in good.stderr

    peak, ceiling = ingest_memory(pipeline)
    assert peak < (ceiling or INGEST_BUDGET_BYTES)
    assert list(pipeline.temp_root.glob("ingest/*")) == []

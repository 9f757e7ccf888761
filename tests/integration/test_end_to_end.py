"""Acceptance of the end-to-end pipeline: URL, local file and kcat in; a searchable,
timestamped transcript out; clear failures that do not stop the services."""

from __future__ import annotations

import itertools
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import jiwer
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import MediaServer, Pipeline, wait_for
from tests.integration.speech import Speech, words

pytestmark = pytest.mark.integration

MIDDLE = 20  # a sentence from the middle of the speech


def _wer(pipeline: Pipeline, media_id: str, speech: Speech) -> float:
    result = pipeline.cli("transcript", media_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["media_id"], document["language"], document["source"]) == (
        media_id,
        "en",
        "asr",
    )
    segments = document["segments"]
    for segment in segments:  # words with their times, inside their segment, in order
        times = [(w["start"], w["end"]) for w in segment["words"]]
        assert segment["start"] <= times[0][0]
        assert times[-1][1] <= segment["end"]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts), "segments out of order"
    hypothesis = " ".join(s["text"] for s in segments)
    return float(jiwer.wer(words(speech.text), words(hypothesis)))


def _search(
    pipeline: Pipeline, query: str, k: int = 10, mode: str = "hybrid"
) -> list[dict[str, Any]]:
    result = pipeline.cli("search", query, "-k", str(k), "--mode", mode, "--json")
    assert result.returncode == 0, result.stderr
    hits: list[dict[str, Any]] = json.loads(result.stdout)
    return hits


def _assert_found(pipeline: Pipeline, media_id: str, speech: Speech, index: int = MIDDLE) -> None:
    """Sentence `index`'s best passage in this media is that sentence, where it is spoken."""
    sentence, spoken_at = speech.sentence_at(index)
    for mode in ("vector", "hybrid"):
        hits = _search(pipeline, sentence, mode=mode)
        if mode == "vector":  # cosine: the sentence itself, or nearly the same words
            assert words(sentence)[:20] in words(hits[0]["text"]) or hits[0]["score"] > 0.8
        [best] = [hit for hit in hits if hit["media_id"] == media_id][:1]
        assert abs(best["start"] - spoken_at) <= 3.0, (mode, best, spoken_at)
        # this media's best passage is as good as any other media's (the same speech, re-run)
        assert best["score"] == pytest.approx(hits[0]["score"], rel=0.1), (mode, hits[:2])


def _submit_wait(pipeline: Pipeline, *args: str) -> str:
    result = pipeline.cli("submit", *args, "--wait", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "indexed" in result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_url_ends_indexed_with_accurate_searchable_transcript(
    pipeline: Pipeline, media_server: MediaServer, speech: Speech
) -> None:
    media_id = _submit_wait(pipeline, media_server.url(speech.path.name))
    shown = pipeline.cli("status", media_id, "--json")  # the CLI's status, once
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status == pipeline.status(media_id)
    assert status["state"] == "indexed"
    assert status["chunks"]["total"] >= 6  # 3.5 minutes in chunks of at most 30 s
    assert status["title"] == speech.path.stem  # yt-dlp names a direct link by its file
    assert _wer(pipeline, media_id, speech) <= 0.15
    _assert_found(pipeline, media_id, speech)
    assert list(pipeline.temp_root.glob("ingest/*")) == []


def test_local_file_gives_the_same_result(pipeline: Pipeline, short_speech: Speech) -> None:
    # the short speech: the URL test proves the accuracy on the long one, once
    media_id = _submit_wait(pipeline, str(short_speech.path))
    assert media_id.startswith("f-")
    assert (pipeline.status(media_id) or {}).get("title") == short_speech.path.stem  # no tags
    assert _wer(pipeline, media_id, short_speech) <= 0.15
    _assert_found(pipeline, media_id, short_speech, 1)
    srt = pipeline.cli("transcript", media_id, "--format", "srt").stdout
    assert srt.startswith("1\n00:00:0")


def test_plain_json_published_with_kcat_ends_indexed(
    pipeline: Pipeline,
    media_server: MediaServer,
    short_speech: Speech,
    kcat_env: dict[str, str],
) -> None:
    url = media_server.url(short_speech.path.name) + "?via=kcat"
    subprocess.run(
        ["kcat", "-P", "-b", pipeline.bootstrap, "-t", pipeline.topic("media.requested")],
        input=json.dumps({"url": url, "media_id": "kcat-short"}),
        text=True,
        env=kcat_env,
        check=True,
        timeout=60,
    )
    status = pipeline.wait_state("kcat-short", {"indexed", "failed"})
    assert status["state"] == "indexed", status
    indexed = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            pipeline.bootstrap,
            "-t",
            pipeline.topic("media.indexed"),
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        env=kcat_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    events = [json.loads(line) for line in indexed.splitlines() if line.strip()]
    assert any(e["media_id"] == "kcat-short" and e["chunk_count"] >= 1 for e in events)


@pytest.mark.parametrize(
    ("name", "reason"), [("missing.wav", "not_found"), ("page.html", "unsupported_media")]
)
def test_bad_url_fails_with_a_reason_and_leaves_no_temp_dir(
    pipeline: Pipeline, media_server: MediaServer, name: str, reason: str
) -> None:
    result = pipeline.cli("submit", media_server.url(name), "--wait", timeout=300)
    assert result.returncode == 1
    assert reason in result.stderr
    status = pipeline.status(result.stdout.strip())
    assert status is not None
    assert status["state"] == "failed"
    assert status["failure"]["reason"] == reason
    assert list(pipeline.temp_root.glob("ingest/*")) == []


def test_unparseable_event_is_dead_lettered_and_the_next_one_served(
    pipeline: Pipeline,
    media_server: MediaServer,
    short_speech: Speech,
    kcat_env: dict[str, str],
) -> None:
    topic = pipeline.topic("media.requested")
    subprocess.run(
        ["kcat", "-P", "-b", pipeline.bootstrap, "-t", topic],
        input="this is {not json\n",
        text=True,
        env=kcat_env,
        check=True,
        timeout=60,
    )

    def dead_letters() -> list[str]:
        out = subprocess.run(
            [
                "kcat",
                "-C",
                "-b",
                pipeline.bootstrap,
                "-t",
                f"{topic}.dlq",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%s|%h\n",
            ],
            env=kcat_env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return [line for line in out.splitlines() if line.startswith("this is {not json")]

    [dead] = wait_for(dead_letters, 120, "the dead letter")
    assert "streamscribe-stage=ingest" in dead
    assert "InvalidEventError" in dead
    media_id = _submit_wait(pipeline, media_server.url(short_speech.path.name) + "?after=dlq")
    assert pipeline.status(media_id) is not None


def test_up_serves_metrics_health_and_readiness(pipeline: Pipeline) -> None:
    import urllib.request

    for service in ("INGEST", "TRANSCRIBE", "EMBED"):
        port = pipeline.env[f"STREAMSCRIBE_{service}__HTTP_PORT"]
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 204
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "process_resident_memory_bytes" in text
        assert "streamscribe_ready 1.0" in text


def test_up_starts_workers_with_the_malloc_settings(pipeline: Pipeline) -> None:
    import psutil

    from streamscribe.cli.supervisor import WORKER_MALLOC

    children = psutil.Process(pipeline.process.pid).children()
    workers = [child for child in children if "worker" in child.cmdline()]
    assert len(workers) == 3
    for worker in workers:
        assert WORKER_MALLOC.items() <= worker.environ().items(), worker.cmdline()


MEMORY_AND_WORK_METRICS = {
    "process_resident_memory_bytes",
    "streamscribe_peak_resident_memory_bytes",
    "streamscribe_memory_ceiling_bytes",
    "streamscribe_memory_paused",
    "streamscribe_model_load_bytes",
    "streamscribe_temp_files",
    "streamscribe_temp_bytes",
    "streamscribe_chunks_total",
    "streamscribe_audio_seconds_total",
    "streamscribe_stage_duration_seconds_count",
    "streamscribe_consumer_lag_messages",
}


def _metrics(pipeline: Pipeline, service: str) -> dict[str, float]:
    """Every sample name on a service's /metrics, with its values summed over their labels."""
    port = pipeline.env[f"STREAMSCRIBE_{service}__HTTP_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_every_service_exports_the_memory_and_work_metrics(
    pipeline: Pipeline, media_server: MediaServer, short_speech: Speech
) -> None:
    _submit_wait(pipeline, media_server.url(short_speech.path.name) + "?metrics")
    for service in ("INGEST", "TRANSCRIBE", "EMBED"):
        m = _metrics(pipeline, service)
        assert not MEMORY_AND_WORK_METRICS - m.keys(), (service, MEMORY_AND_WORK_METRICS - m.keys())
        rss = m["process_resident_memory_bytes"]
        assert rss > 10 * 2**20, service
        assert m["streamscribe_peak_resident_memory_bytes"] >= rss, service
        assert m["streamscribe_memory_paused"] == 0, service
        assert (m["streamscribe_model_load_bytes"] > 0) is (service != "INGEST"), service
        assert m["streamscribe_chunks_total"] > 0, service
        assert m["streamscribe_audio_seconds_total"] > 0, service
        assert m["streamscribe_stage_duration_seconds_count"] > 0, service


def test_submit_of_a_missing_file_is_a_clear_user_error(pipeline: Pipeline, tmp_path: Path) -> None:
    result = pipeline.cli("submit", str(tmp_path / "nope.mp3"))
    assert result.returncode == 2
    assert "neither a URL nor a readable file" in result.stderr

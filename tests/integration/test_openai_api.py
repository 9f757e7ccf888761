"""OpenAI's official SDK against the running pipeline: `audio.transcriptions.create` goes
through ingest's chunk source, the transcribe workers and the ledger, and answers in OpenAI's
shapes; subtitles parse; a wrong key is the SDK's AuthenticationError; the models list the
transcriber's model. Then schemathesis drives every operation of the running API's own OpenAPI
document with a valid key: no 5xx, every answer as documented."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import jiwer
import openai
import pysubs2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import Pipeline
from tests.integration.speech import Speech, words

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(pipeline: Pipeline) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{pipeline.api_url}/v1",
        api_key=pipeline.env["STREAMSCRIBE_API_KEY"],
        max_retries=0,
        timeout=300,
    ) as sdk:
        yield sdk


def test_the_openai_sdk_transcribes_through_the_pipeline(
    client: openai.OpenAI, pipeline: Pipeline, short_speech: Speech
) -> None:
    with short_speech.path.open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert float(jiwer.wer(words(short_speech.text), words(verbose.text))) <= 0.15
    assert verbose.language == "en"
    segments, spoken = verbose.segments or [], verbose.words or []
    assert segments
    assert spoken
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(spoken))
    assert segments[0].start <= spoken[0].start
    assert spoken[-1].end <= segments[-1].end + 1e-6

    for fmt in ("srt", "vtt"):
        with short_speech.path.open("rb") as audio:
            document = client.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format=fmt
            )
        cues = pysubs2.SSAFile.from_string(str(document), format_=fmt)
        assert len(cues) >= 1, document
        heard = words(" ".join(cue.plaintext for cue in cues))
        assert float(jiwer.wer(words(short_speech.text), heard)) <= 0.15, document


def test_a_wrong_key_is_the_sdks_authentication_error(pipeline: Pipeline) -> None:
    with (
        openai.OpenAI(
            base_url=f"{pipeline.api_url}/v1", api_key="ss_wrong", max_retries=0
        ) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.models.list()


def test_models_lists_the_transcribers_model(client: openai.OpenAI, pipeline: Pipeline) -> None:
    ids = {model.id for model in client.models.list()}
    assert pipeline.env["STREAMSCRIBE_TRANSCRIBE__MODEL"] in ids
    assert "whisper-1" in ids


def test_every_operation_conforms_to_its_document(pipeline: Pipeline) -> None:
    """Each operation of the served document, with generated valid requests and a valid key."""
    schema = schemathesis.openapi.from_url(f"{pipeline.api_url}/openapi.json")
    key = {"Authorization": f"Bearer {pipeline.env['STREAMSCRIBE_API_KEY']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=key, checks=CHECKS, timeout=120)

        conforms()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

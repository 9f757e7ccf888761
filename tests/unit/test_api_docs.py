"""The committed interface documents are what the code generates (`make docs` rewrites them)."""

from __future__ import annotations

import json
from pathlib import Path

from streamscribe.cli.api_docs import documents

DOCS = Path(__file__).parents[2] / "docs"


def test_docs_openapi_and_asyncapi_are_current() -> None:
    generated = documents()
    assert {"openapi.json", "asyncapi/ingest.json", "asyncapi/embed.json"} <= set(generated)
    stale = [name for name, text in generated.items() if (DOCS / name).read_text() != text]
    assert not stale, f"stale: {stale}; run: make docs"


def test_every_topic_a_service_consumes_is_in_its_asyncapi_document() -> None:
    generated = documents()
    for name, topics in {
        "ingest": ("media.requested",),
        "transcribe": ("media.audio",),
        "embed": ("media.transcript", "media.requested", "media.failed"),
    }.items():
        text = generated[f"asyncapi/{name}.json"]
        for topic in topics:
            assert f'"address": "{topic}"' in text, (name, topic)


def test_every_event_a_service_publishes_is_in_its_asyncapi_document_with_its_schema() -> None:
    generated = documents()
    for name, models in {
        "ingest": ("AudioChunk", "MediaFailed"),
        "transcribe": ("Transcript", "MediaFailed"),
        "embed": ("MediaIndexed", "MediaFailed"),
    }.items():
        schemas = json.loads(generated[f"asyncapi/{name}.json"])["components"]["schemas"]
        for model in models:
            assert "properties" in schemas[model], (name, model)

"""The pipeline's interface documents, generated: `docs/openapi.json` (the HTTP API) and
`docs/asyncapi/<service>.json` (the topics each service consumes, from its FastStream app).

`python -m streamscribe.cli.api_docs [DOCS_DIR]` writes them (`make docs`); a test keeps the
committed ones current."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from streamscribe.api.app import openapi_document
from streamscribe.api.settings import ApiSettings
from streamscribe.common.settings import KafkaSettings, TopicSettings
from streamscribe.embed.app import create_app as embed_app
from streamscribe.embed.settings import EmbedSettings
from streamscribe.ingest.app import create_app as ingest_app
from streamscribe.ingest.settings import IngestSettings
from streamscribe.transcribe.app import create_app as transcribe_app
from streamscribe.transcribe.settings import TranscribeSettings


def _text(document: Any) -> str:
    # sorted: FastStream lists channels in an order that differs between runs
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def documents() -> dict[str, str]:
    """Path under docs/ -> content. Built on the default broker address and topic names, so the
    documents do not follow the shell's STREAMSCRIBE_* variables."""
    defaults: dict[str, Any] = {"kafka": KafkaSettings(), "topics": TopicSettings()}
    apps = {
        "ingest": ingest_app(IngestSettings(**defaults)),
        "transcribe": transcribe_app(TranscribeSettings(**defaults)),
        "embed": embed_app(EmbedSettings(**defaults)),
    }
    generated = {
        f"asyncapi/{name}.json": _text(app.schema.to_specification().to_jsonable())
        for name, app in apps.items()
    }
    openapi = openapi_document(ApiSettings(**defaults))
    return {"openapi.json": _text(openapi), **generated}


def main(argv: list[str]) -> None:
    docs = Path(argv[1] if len(argv) > 1 else "docs")
    for name, text in documents().items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
        print(f"wrote {docs / name}")


if __name__ == "__main__":
    main(sys.argv)

"""The processes that run more than one service: embed with the HTTP API (`worker embed`), and
one box (`up --single-process`): ingest, transcribe, embed and the API as subscribers of one
FastStream app, on one broker connection, with one /metrics, /healthz and /readyz.

Still through Kafka topics, still one model each (embed and the API share the embedder), still
the same delivery policy: each stage registers exactly the subscribers its own worker would.
Both serve on embed's port, so a client finds the API at the same address in both modes. What
one process saves on a small host is the interpreter and the libraries every worker would load
again (Python, pydantic, FastStream, aiokafka, uvicorn, numpy: about 50-60 MB each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.asgi import AsgiFastStream

from streamscribe.api.app import service as api
from streamscribe.api.settings import ApiSettings
from streamscribe.common.service import build_app
from streamscribe.embed.app import STAGE as EMBED
from streamscribe.embed.app import service as embed

if TYPE_CHECKING:
    from streamscribe.ingest.settings import IngestSettings
    from streamscribe.transcribe.settings import TranscribeSettings


def embed_with_api(settings: ApiSettings) -> AsgiFastStream:
    """The embed worker, serving the HTTP API beside its consumers."""
    return build_app(settings, EMBED, embed(settings), api(settings))


def create_app(
    ingest_settings: IngestSettings,
    transcribe_settings: TranscribeSettings,
    embed_settings: ApiSettings,
) -> AsgiFastStream:
    # imported here, not above: the embed worker (embed_with_api) runs in an image without the
    # downloader (yt-dlp) and the transcriber (faster-whisper)
    from streamscribe.ingest.app import service as ingest
    from streamscribe.transcribe.app import service as transcribe

    # each stage sizes its largest input (chunk seconds, embedding batch) from the RSS it finds
    # after its own load: the largest model first, so embed and ingest count it in
    return build_app(
        ingest_settings,
        "all",
        transcribe(transcribe_settings),
        embed(embed_settings),
        api(embed_settings),
        ingest(ingest_settings),
    )

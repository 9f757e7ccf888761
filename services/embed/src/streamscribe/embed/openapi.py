"""The OpenAPI document of the HTTP API (`api.py`), written by hand: the API is six routes on
FastStream's ASGI app, with no web framework to generate it. `make docs` writes it to
docs/openapi.json; a test keeps that file and this one in step, and one checks every path is
served."""

from __future__ import annotations

from typing import Any

from streamscribe.common.events import MEDIA_ID_PATTERN

_ERROR = {
    "description": "What went wrong, and what to do instead.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {**_ERROR, "description": description}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MEDIA_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": MEDIA_ID_PATTERN},
}
_SOURCE = {"type": ["string", "null"], "enum": ["asr", "captions", None]}
_WORD = {
    "type": "object",
    "properties": {
        "start": {"type": "number"},
        "end": {"type": "number"},
        "word": {"type": "string"},
        "probability": {"type": "number"},
    },
}
_SEGMENT = {
    "type": "object",
    "properties": {
        "start": {"type": "number", "description": "Seconds from the start of the media."},
        "end": {"type": "number"},
        "text": {"type": "string"},
        "words": {"type": "array", "items": _WORD, "description": "When word times are known."},
    },
}
_RECORD = {
    "type": "object",
    "properties": {
        "media_id": {"type": "string"},
        "state": {"type": "string", "enum": ["requested", "transcribing", "indexed", "failed"]},
        "run": {"type": "string"},
        "source_url": {"type": ["string", "null"]},
        "chunks": {
            "type": "object",
            "properties": {
                "total": {"type": ["integer", "null"]},
                "stored": {"type": "integer"},
            },
        },
        "passages": {"type": "integer"},
        "language": {"type": ["string", "null"]},
        "source": _SOURCE,
        "failure": {
            "type": ["object", "null"],
            "properties": {
                "stage": {"type": "string"},
                "reason": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
        "requested_at": {"type": ["string", "null"], "format": "date-time"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "indexed_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_HIT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "media_id": {"type": "string"},
        "source_url": {"type": "string"},
        "start": {"type": "number", "description": "Seconds from the start of the media."},
        "end": {"type": "number"},
        "text": {"type": "string"},
        "score": {"type": "number", "description": "Higher is better (cosine, BM25 or RRF)."},
        "language": {"type": ["string", "null"]},
        "source": _SOURCE,
    },
}

_SUBMIT = {
    "summary": "Request a media URL: publishes media.requested and records it in the ledger.",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "description": "http or https"},
                        "language": {"type": "string", "pattern": "^[a-z]{2,3}$"},
                        "media_id": {"type": "string", "pattern": MEDIA_ID_PATTERN},
                    },
                }
            }
        },
    },
    "responses": {
        "202": _json(
            {
                "type": "object",
                "properties": {
                    "media_id": {"type": "string"},
                    "run": {"type": "string"},
                    "status": {"type": "string", "description": "Where to follow it."},
                },
            },
            "Accepted: the request is on its way to ingest.",
        ),
        "400": _error("Not a JSON object."),
        "413": _error("Body over 64 KiB."),
        "422": _error("Not a valid request (the field and why)."),
    },
}
_RECENT = {
    "summary": "The media changed last, newest first.",
    "parameters": [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
        }
    ],
    "responses": {
        "200": _json({"type": "array", "items": _RECORD}, "Their records."),
        "400": _error("limit out of range."),
    },
}
_STATUS = {
    "summary": "The ledger's record of one media (its newest run).",
    "parameters": [_MEDIA_ID],
    "responses": {"200": _json(_RECORD, "The record."), "404": _error("No such media.")},
}
_TRANSCRIPT = {
    "summary": "The whole transcript of an indexed media, streamed.",
    "parameters": [
        _MEDIA_ID,
        {
            "name": "format",
            "in": "query",
            "schema": {"type": "string", "enum": ["txt", "srt", "vtt", "json"], "default": "txt"},
        },
    ],
    "responses": {
        "200": {
            "description": "The transcript in the format asked for.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/x-subrip": {"schema": {"type": "string"}},
                "text/vtt": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "media_id": {"type": "string"},
                            "language": {"type": ["string", "null"]},
                            "source": _SOURCE,
                            "segments": {"type": "array", "items": _SEGMENT},
                        },
                    }
                },
            },
        },
        "400": _error("Unknown format."),
        "404": _error("No such media."),
        "409": _error("Not indexed yet (or failed): its state and chunks stored."),
    },
}
_SEARCH = {
    "summary": "The best passages for a query.",
    "parameters": [
        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
        {
            "name": "k",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
        },
        {
            "name": "mode",
            "in": "query",
            "description": "Default: STREAMSCRIBE_EMBED__SEARCH_MODE.",
            "schema": {"type": "string", "enum": ["hybrid", "vector", "keyword"]},
        },
    ],
    "responses": {
        "200": _json(
            {
                "type": "object",
                "properties": {
                    "hits": {"type": "array", "items": _HIT},
                    "index_empty": {
                        "type": "boolean",
                        "description": "True when nothing is indexed at all.",
                    },
                },
            },
            "Best first.",
        ),
        "400": _error("No query, or k or mode out of range."),
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "streamscribe",
        "version": "1",
        "description": "Served by the embed service (in `up --single-process`, by the one "
        "process) on its HTTP port, beside /metrics, /healthz and /readyz. Errors are JSON "
        '`{"error": "..."}`; 503 while the index is unavailable.',
    },
    "paths": {
        "/media": {"post": _SUBMIT, "get": _RECENT},
        "/media/{id}": {"get": _STATUS},
        "/media/{id}/transcript": {"get": _TRANSCRIPT},
        "/search": {"get": _SEARCH},
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            }
        },
    },
}

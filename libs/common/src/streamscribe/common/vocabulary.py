"""The words the API, the CLI and the index share, defined once: transcript formats and
search modes."""

from __future__ import annotations

from typing import Literal, get_args

Format = Literal["txt", "srt", "vtt", "json"]
"""A transcript's export format."""
FORMATS: tuple[Format, ...] = get_args(Format)

SearchMode = Literal["hybrid", "vector", "keyword"]
"""Vector and keyword (BM25) results fused by reciprocal rank, or either alone."""
MODES: tuple[SearchMode, ...] = get_args(SearchMode)

Scope = Literal["read", "submit", "admin"]
"""What an API key may do, each including the ones before it: read (search, status,
transcripts), submit (and forget), admin (keys)."""
SCOPES: tuple[Scope, ...] = get_args(Scope)

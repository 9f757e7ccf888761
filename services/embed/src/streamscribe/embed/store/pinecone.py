"""`PineconeVectors`: passages and their vectors in a Pinecone serverless index.

Choices, and why:

- The REST data plane (`pinecone.Index`), not gRPC: no grpcio/protobuf in the worker, and the
  same HTTP/JSON reaches Pinecone and a loopback stand-in (`index_host=http://127.0.0.1:PORT`).
- One retry policy, ours. The 10.2.0 SDK retries 408, 429, 5xx and connection errors on its own
  (3 retries, waits of up to 60 s, a process-wide retry budget per host), and its data-plane
  client takes no retry setting (`Pinecone(retry_config=...)` reaches only the control plane and
  gRPC). `_open_index` switches the SDK's off, so `max_attempts` and `backoff_seconds` are the
  policy in force and a failure is a `TransientError` after a known number of requests.
- Our own batching, not `Index.upsert(batch_size=...)`: that path sends batches concurrently and
  reports a failed batch in its answer instead of raising; a chunk is written in order, all or
  error, and each request is kept under Pinecone's limits (1 000 records, 2 MB) by its size.
- The passage text travels in the metadata (Pinecone has nowhere else to keep it), clipped so a
  record's metadata stays well under Pinecone's 40 KB.
- No keyword search: a dense index has no words to match.
- Pinecone is eventually consistent: `count` is what the index reports now, and the ledger, not
  this module, decides when a media is complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pinecone import (
    ApiError,
    ConflictError,
    DenseVectorField,
    Index,
    IndexModel,
    ListResponse,
    NotFoundError,
    Pinecone,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
    RetryConfig,
)
from pinecone._internal.constants import DATA_PLANE_API_VERSION
from pinecone._internal.http_client import HTTPClient

from streamscribe.common.errors import ConfigError, TransientError
from streamscribe.embed.passages import Passage
from streamscribe.embed.settings import PineconeSection
from streamscribe.embed.store.base import Hit, Vectors, check_vectors

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ID_CHARS = 512
"""Pinecone's limit on a record id."""
METADATA_BUDGET = 32 * 1024
"""Bytes of JSON metadata per record: Pinecone refuses more than 40 KB; the rest is margin."""
REQUEST_BUDGET = 1_900_000
"""Bytes of JSON per upsert request: Pinecone refuses more than 2 MB."""
DELETE_BATCH = 1000
"""Ids per delete request, Pinecone's limit."""
LIST_PAGE = 100
"""Ids per list request, Pinecone's largest page."""
QUERY_TOP_K_MAX = 1000
"""Pinecone's largest top_k for a query that returns metadata."""
MAX_BACKOFF_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 300.0
"""How long a new index may take to become ready."""
DEFAULT_NAMESPACE_KEYS = ("__default__", "")
"""How describe_index_stats names the default namespace (2026-07, then older versions)."""
NO_SDK_RETRIES = RetryConfig(max_retries=0, retryable_status_codes=frozenset())

_RETRYABLE_STATUS = frozenset({408, 429})
_NO_ROOM_FOR_TEXT = "metadata of passage {} is over {} bytes without its text"


class PineconeVectors:
    """The `VectorBackend` on a Pinecone index; every call uses the configured namespace."""

    keyword_search = False

    def __init__(
        self, section: PineconeSection, dimension: int, *, control_host: str | None = None
    ) -> None:
        """Open the index at `index_host`, or look `index_name` up (creating it when missing).

        `control_host` points the control plane elsewhere (a stand-in); unset, the SDK uses
        `PINECONE_CONTROLLER_HOST`, then the public API.
        """
        if section.api_key is None or not (section.index_host or section.index_name):
            raise ConfigError("pinecone needs api_key and index_host or index_name")
        self._section = section
        self._dimension = dimension
        self._key = section.api_key.get_secret_value()
        host = section.index_host or self._index_host(control_host)
        self._index = self._guard("open the index", partial(_open_index, host, section, self._key))
        self._closed = False

    # -- VectorBackend ---------------------------------------------------------------------

    def upsert(
        self,
        passages: Sequence[Passage],
        vectors: Vectors,
        source_url: str,
        stale_ids: Sequence[str],
    ) -> None:
        matrix = check_vectors(passages, vectors)
        if passages and matrix.shape[1] != self._dimension:
            raise ValueError(
                f"vectors have {matrix.shape[1]} dimensions, the index has {self._dimension}"
            )
        for key in [*(p.id for p in passages), *stale_ids]:
            _check_id(key)
        # every check passed before the first request: nothing is half-written by a bad input
        records = [_record(p, row, source_url) for p, row in zip(passages, matrix, strict=True)]
        namespace = self._section.namespace
        for batch in _batches(records, self._section.batch_size, _budget(namespace)):
            upsert = partial(self._index.upsert, vectors=batch, namespace=namespace)
            self._call(f"upsert of {len(batch)} records", upsert)
        # after the upsert: a failure in between leaves extra passages, never missing ones
        self._delete_in_batches(stale_ids)

    def delete_media(self, media_id: str) -> None:
        """Serverless indexes cannot delete by metadata filter: list the ids under the prefix
        `media_id:` (ids are `media_id:seq:passage`), then delete them in batches. Listing is
        eventually consistent like the rest: a passage written moments ago may be missed."""
        ids = [key for key in self._ids_with_prefix(f"{media_id}:") if _of_media(key, media_id)]
        self._delete_in_batches(ids)

    def nearest(self, vector: Vectors, k: int) -> list[Hit]:
        if k <= 0:
            return []
        values = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        query = partial(
            self._index.query,
            vector=values,
            top_k=min(k, QUERY_TOP_K_MAX),
            include_metadata=True,
            namespace=self._section.namespace,
        )
        response = self._call("query", query)
        hits = [_hit(match.id, match.score, match.metadata or {}) for match in response.matches]
        return sorted(hits, key=lambda hit: hit.score, reverse=True)

    def keyword(self, query: str, k: int) -> list[Hit]:
        return []

    def count(self) -> int:
        stats = self._call("describe_index_stats", self._index.describe_index_stats)
        keys = DEFAULT_NAMESPACE_KEYS if not self._section.namespace else (self._section.namespace,)
        for key in keys:
            if key in stats.namespaces:
                return stats.namespaces[key].vector_count
        return 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._index.close()

    # -- requests --------------------------------------------------------------------------

    def _delete(self, ids: list[str]) -> None:
        self._index.delete(ids=ids, namespace=self._section.namespace)

    def _delete_in_batches(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), DELETE_BATCH):
            batch = list(ids[start : start + DELETE_BATCH])
            self._call(f"delete of {len(batch)} ids", partial(self._delete, batch))

    def _ids_with_prefix(self, prefix: str) -> list[str]:
        """Every id starting with `prefix`, a page at a time (each page retried on its own)."""
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call("list of ids", partial(self._list_page, prefix, token))
            ids.extend(item.id for item in page.vectors if item.id is not None)
            token = page.pagination.next if page.pagination is not None else None
            if token is None:
                return ids

    def _list_page(self, prefix: str, token: str | None) -> ListResponse:
        return self._index.list_paginated(
            prefix=prefix,
            limit=LIST_PAGE,
            pagination_token=token,
            namespace=self._section.namespace,
        )

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """`request`, tried up to `max_attempts` times while its failure may pass."""
        delay = self._section.backoff_seconds
        for attempt in range(1, self._section.max_attempts + 1):
            try:
                return request()
            except PineconeError as exc:
                if not _retryable(exc):
                    raise self._permanent(what, exc) from exc
                if attempt == self._section.max_attempts:
                    raise TransientError(
                        self._scrub(f"pinecone {what} failed {attempt} times: {_describe(exc)}")
                    ) from exc
                wait = _backoff(delay, exc)
                log.warning(
                    "pinecone %s: %s; try %d of %d in %.2fs",
                    what,
                    self._scrub(_describe(exc)),
                    attempt + 1,
                    self._section.max_attempts,
                    wait,
                )
                time.sleep(wait)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        raise AssertionError("unreachable: max_attempts >= 1")

    def _guard(self, what: str, request: Callable[[], T]) -> T:
        """A call made once while opening: any SDK refusal is a setting to fix."""
        try:
            return request()
        except PineconeError as exc:
            raise ConfigError(self._scrub(f"pinecone: cannot {what}: {exc}")) from exc

    def _permanent(self, what: str, exc: PineconeError) -> Exception:
        """The error for a failure no retry can cure: the operator must act."""
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            message = (
                f"pinecone refused the API key (HTTP {status}) on {what}: check the "
                "pinecone api_key setting (STREAMSCRIBE_PINECONE__API_KEY)"
            )
        elif status == 404:
            message = f"pinecone {what}: not found (HTTP 404): check index_host / index_name"
        else:
            message = f"pinecone {what} was refused: {_describe(exc)}"
        return ConfigError(self._scrub(message))

    def _scrub(self, message: str) -> str:
        """The message without the API key, whatever a server or library echoed."""
        return message.replace(self._key, "***") if self._key else message

    # -- finding or creating the index -----------------------------------------------------

    def _index_host(self, control_host: str | None) -> str:
        """The data-plane host of `index_name`, creating a serverless index when missing."""
        name = self._section.index_name
        assert name is not None
        control = self._guard("reach the control plane", partial(self._control, control_host))
        try:
            model = self._find_or_create(control, name)
            model = self._wait_ready(control, model)
        finally:
            control.close()
        self._check_model(model)
        assert model.host is not None
        return model.host

    def _control(self, control_host: str | None) -> Pinecone:
        # the control plane takes a retry policy; ours (`_call`) is the one in force here too
        return Pinecone(
            api_key=self._key,
            host=control_host,
            timeout=self._section.timeout_seconds,
            retry_config=NO_SDK_RETRIES,
        )

    def _find_or_create(self, control: Pinecone, name: str) -> IndexModel:
        describe = partial(_describe_or_none, control, name)
        model = self._call(f"describe of index {name}", describe)
        if model is not None:
            return model
        log.info("pinecone: creating index %s (%d dimensions, cosine)", name, self._dimension)
        create = partial(_create_or_none, control, name, self._new_index())
        model = self._call(f"creation of index {name}", create)
        if model is not None:
            return model
        # another worker created it first
        model = self._call(f"describe of index {name}", describe)
        if model is None:
            raise TransientError(f"pinecone index {name} was created, then disappeared")
        return model

    def _new_index(self) -> dict[str, Any]:
        """The `create` arguments of a serverless cosine index of our dimension."""
        return {
            # the reserved field name `_values` makes a vector index, served by upsert/query
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self._dimension,
                        "metric": "cosine",
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",  # 2026-07's name for serverless
                "cloud": self._section.cloud,
                "region": self._section.region,
            },
        }

    def _wait_ready(self, control: Pinecone, model: IndexModel) -> IndexModel:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        pause = 0.1
        while not (model.status.ready and model.host):
            if time.monotonic() > deadline:
                raise TransientError(
                    f"pinecone index {model.name} not ready after {READY_TIMEOUT_SECONDS:.0f}s "
                    f"(state {model.status.state})"
                )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            describe = partial(control.indexes.describe, model.name)
            model = self._call(f"describe of index {model.name}", describe)
        return model

    def _check_model(self, model: IndexModel) -> None:
        """The index must be a cosine index of our dimension, or every write would fail."""
        dense = [f for f in model.schema.fields.values() if isinstance(f, DenseVectorField)]
        if len(dense) != 1:
            raise ConfigError(f"pinecone index {model.name} is not a single dense-vector index")
        if dense[0].dimension != self._dimension or dense[0].metric != "cosine":
            raise ConfigError(
                f"pinecone index {model.name} is {dense[0].metric} with {dense[0].dimension} "
                f"dimensions; the model needs cosine with {self._dimension}: use another "
                "index_name"
            )


def _open_index(host: str, section: PineconeSection, key: str) -> Index:
    """A data-plane client for `host` with the SDK's own retries off (see the module doc)."""
    index = Index(host=host, api_key=key, timeout=section.timeout_seconds)
    # 10.2.0 has no public switch: rebuild its HTTP client from its own config, retries off
    # (private names, hence the exact pin; test_429_forever_gives_up_after_max_attempts
    # counts the requests and fails if the SDK's retries come back)
    index._http.close()
    config = dataclasses.replace(index._config, retry_config=NO_SDK_RETRIES)
    index._http = HTTPClient(config, DATA_PLANE_API_VERSION)
    return index


def _describe_or_none(control: Pinecone, name: str) -> IndexModel | None:
    try:
        return control.indexes.describe(name)
    except NotFoundError:
        return None


def _create_or_none(control: Pinecone, name: str, spec: dict[str, Any]) -> IndexModel | None:
    """The new index (not waited for: `_wait_ready` does, with our retries), or None when
    another process created it first."""
    try:
        return control.indexes.create(name=name, timeout=-1, **spec)
    except ConflictError:
        return None


def _retryable(exc: PineconeError) -> bool:
    if isinstance(exc, PineconeConnectionError | PineconeTimeoutError):
        return True
    if isinstance(exc, ApiError):
        return exc.status_code in _RETRYABLE_STATUS or 500 <= exc.status_code <= 599
    return False


def _backoff(delay: float, exc: PineconeError) -> float:
    """Half to all of `delay` (jitter: workers throttled together do not retry together),
    and never sooner than a 429's Retry-After."""
    wait = delay * random.uniform(0.5, 1.0)
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float):
        wait = max(wait, min(float(retry_after), MAX_BACKOFF_SECONDS))
    return wait


def _describe(exc: PineconeError) -> str:
    """Status and server message, without the response headers an ApiError also carries."""
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _of_media(key: str, media_id: str) -> bool:
    """Whether `key` is a passage id of this media: `media_id:seq:passage`, digits after the
    prefix. Media ids may hold colons, so the prefix `a:` also lists passages of media `a:b`."""
    rest = key.removeprefix(f"{media_id}:").split(":")
    return key.startswith(f"{media_id}:") and len(rest) == 2 and all(p.isdigit() for p in rest)


def _check_id(key: str) -> None:
    if not 1 <= len(key) <= MAX_ID_CHARS or not key.isascii() or "\x00" in key:
        raise ValueError(
            f"pinecone ids are 1 to {MAX_ID_CHARS} ASCII characters: {key[:60]!r} "
            f"({len(key)} characters)"
        )


def _json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON, the SDK's encoding (orjson) or a little over it."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _record(
    passage: Passage, row: npt.NDArray[np.float32], source_url: str
) -> tuple[dict[str, Any], int]:
    """The upsert record of one passage and its size in bytes of JSON."""
    metadata: dict[str, Any] = {
        "media_id": passage.media_id,
        "seq": passage.seq,
        "index": passage.index,
        "start": passage.start,
        "end": passage.end,
        "source_url": source_url,
        "text": "",
    }
    room = METADATA_BUDGET - _json_size(metadata)
    if room < 0:
        raise ValueError(_NO_ROOM_FOR_TEXT.format(passage.id, METADATA_BUDGET))
    metadata["text"] = _clip(passage.text, room)
    record = {"id": passage.id, "values": row.tolist(), "metadata": metadata}
    return record, _json_size(record)


def _clip(text: str, room: int) -> str:
    """The longest prefix of `text` whose JSON string body (escapes included) fits `room`."""
    if _json_size(text) - 2 <= room:
        return text
    # a character costs at least one byte: the answer is under `room` characters; bisect it
    low, high = 0, min(len(text), room)
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(text[:middle]) - 2 <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _budget(namespace: str) -> int:
    """Bytes left for records once the request's envelope is counted."""
    return REQUEST_BUDGET - _json_size({"vectors": [], "namespace": namespace})


def _batches(
    records: list[tuple[dict[str, Any], int]], max_records: int, max_bytes: int
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches of at most `max_records` records and `max_bytes` bytes."""
    batch: list[dict[str, Any]] = []
    size = 0
    for record, record_size in records:
        if batch and (len(batch) >= max_records or size + record_size + 1 > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_size + 1  # the comma between records
    if batch:
        yield batch


def _hit(key: str, score: float, metadata: dict[str, Any]) -> Hit:
    return Hit(
        id=key,
        media_id=str(metadata.get("media_id", "")),
        source_url=str(metadata.get("source_url", "")),
        start=float(metadata.get("start", 0.0)),
        end=float(metadata.get("end", 0.0)),
        text=str(metadata.get("text", "")),
        score=float(score),
    )

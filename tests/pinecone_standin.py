"""A stand-in for Pinecone on loopback: one serverless index's data plane, and the few
control-plane calls that look an index up or create it, over HTTP/JSON as the `pinecone` 10.2.0
SDK speaks them (API version 2026-07, captured by pointing the SDK at a logging server).

    with PineconeStandin(api_key="k", dimension=384, fail_first=2) as server:
        backend = PineconeVectors(PineconeSection(api_key=..., index_host=server.url), 384)

Data plane, as the SDK sends it (JSON bodies, camelCase keys; `namespace` is left out of the
upsert, query and fetch requests for the default namespace, always sent by delete):
    POST /vectors/upsert          {"vectors": [{"id", "values", "metadata"?}], "namespace"?}
    POST /query                   {"topK", "includeValues", "includeMetadata", "vector", ...}
    GET  /vectors/fetch?ids=a&ids=b&namespace=ns
    GET  /vectors/list?namespace=ns&prefix=p&limit=n&paginationToken=t
                                  {"vectors": [{"id"}], "pagination"?: {"next"}, ...}
    POST /vectors/delete          {"namespace", "ids" | "deleteAll"}
    POST /describe_index_stats    {}  (the default namespace is reported as "__default__")
Control plane: GET /indexes/{name}, POST /indexes {"name", "schema", "deployment"}.
Every request carries `Api-Key` (answered 401 when wrong), `X-Pinecone-Api-Version: 2026-07` and
`User-Agent: python-client-10.2.0`.

Pinecone's limits are enforced the way Pinecone answers them: at most 1 000 vectors per upsert
(400), a body of at most 2 MB (413, the status the SDK documents for it; read as 2 000 000
bytes, the stricter reading), metadata of at most 40 KB (40 960 bytes of JSON) per record (400),
ids of 1 to 512 ASCII characters (400), values as wide as the index (400), list pages of 1 to
100 ids (400; 100 when `limit` is left out), in id order, with an opaque token for the next page
that the last page does not carry.

Test knobs: `fail_first` answers `fail_status` (429) to the first N data-plane requests;
`visibility_delay` makes each write visible to query, fetch and stats only that many seconds
later (Pinecone is eventually consistent); `ready_after` keeps a created index initialising
that long. `requests` records every request (method, path, status, items, body bytes).
"""

from __future__ import annotations

import base64
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_UPSERT_VECTORS = 1000
MAX_REQUEST_BYTES = 2_000_000
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_CHARS = 512
MAX_LIST_LIMIT = 100
DEFAULT_NAMESPACE_KEY = "__default__"
DATA_PATHS = frozenset(
    {
        "/vectors/upsert",
        "/query",
        "/vectors/fetch",
        "/vectors/list",
        "/vectors/delete",
        "/describe_index_stats",
    }
)


class _HttpError(Exception):
    """An error answer, raised from deep inside a handler."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _data_error(status: int, message: str) -> _HttpError:
    """Data-plane errors are gRPC-status shaped: a numeric code and a message."""
    codes = {400: 3, 401: 16, 404: 5, 413: 3, 429: 8}
    return _HttpError(status, {"code": codes.get(status, 13), "message": message, "details": []})


def _control_error(status: int, code: str, message: str) -> _HttpError:
    return _HttpError(status, {"error": {"code": code, "message": message}, "status": status})


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it; `items` is vectors upserted or ids deleted."""

    method: str
    path: str
    status: int
    items: int
    body_bytes: int
    namespace: str | None
    headers: dict[str, str]

    @property
    def data_plane(self) -> bool:
        return self.path in DATA_PATHS


@dataclass
class _Index:
    name: str
    dimension: int
    cloud: str
    region: str
    ready_at: float


@dataclass
class _Write:
    visible_at: float
    namespace: str
    upserts: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    delete_all: bool = False


class PineconeStandin:
    """One index on 127.0.0.1 (free port), in memory, per namespace; a context manager."""

    def __init__(
        self,
        api_key: str = "k",
        dimension: int = 384,
        *,
        fail_first: int = 0,
        fail_status: int = 429,
        visibility_delay: float = 0.0,
        index_name: str | None = None,
        ready_after: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.dimension = dimension
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.visibility_delay = visibility_delay
        self.ready_after = ready_after
        self.requests: list[RecordedRequest] = []
        self.indexes: dict[str, _Index] = {}
        if index_name is not None:
            self.indexes[index_name] = _Index(index_name, dimension, "aws", "us-east-1", 0.0)
        self._lock = threading.Lock()
        self._pending: list[_Write] = []
        self._stored: dict[str, dict[str, dict[str, Any]]] = {}
        self._failed = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PineconeStandin:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what tests inspect ----------------------------------------------------------------

    def data_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.data_plane]

    def records(self, namespace: str = "") -> dict[str, dict[str, Any]]:
        """Every record of a namespace, including writes not yet visible to queries."""
        with self._lock:
            self._apply(math.inf)
            return {key: dict(value) for key, value in self._stored.get(namespace, {}).items()}

    # -- request handling (called from handler threads) ------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """The status and JSON answer of one request, recorded."""
        path = urlsplit(target).path
        items, namespace = 0, None
        try:
            payload = json.loads(body) if body else {}
            items, namespace = _describe(path, target, payload)
            if path in DATA_PATHS:
                self._gate()
            if headers.get("api-key") != self.api_key:
                raise _data_error(401, "Invalid API Key")
            status = 201 if (method, path) == ("POST", "/indexes") else 200
            answer = self._route(method, path, target, payload, len(body))
        except _HttpError as error:
            status, answer = error.status, error.body
        except (ValueError, TypeError, KeyError) as exc:
            status, answer = 400, _data_error(400, f"Invalid request: {exc!r}").body
        record = RecordedRequest(method, path, status, items, len(body), namespace, headers)
        with self._lock:
            self.requests.append(record)
        return status, answer

    def _gate(self) -> None:
        with self._lock:
            if self._failed >= self.fail_first:
                return
            self._failed += 1
        raise _data_error(self.fail_status, "Request rate limit exceeded, slow down")

    def _route(self, method: str, path: str, target: str, payload: Any, size: int) -> Any:
        routes: dict[tuple[str, str], Callable[[], Any]] = {
            ("POST", "/vectors/upsert"): lambda: self._upsert(payload, size),
            ("POST", "/query"): lambda: self._query(payload),
            ("GET", "/vectors/fetch"): lambda: self._fetch(parse_qs(urlsplit(target).query)),
            ("GET", "/vectors/list"): lambda: self._list(parse_qs(urlsplit(target).query)),
            ("POST", "/vectors/delete"): lambda: self._delete(payload),
            ("POST", "/describe_index_stats"): self._stats,
            ("POST", "/indexes"): lambda: self._create_index(payload),
        }
        if (method, path) in routes:
            return routes[(method, path)]()
        if method == "GET" and path.startswith("/indexes/"):
            return self._describe_index(unquote(path.removeprefix("/indexes/")))
        raise _data_error(404, f"no route for {method} {path}")

    # -- data plane ------------------------------------------------------------------------

    def _upsert(self, payload: dict[str, Any], size: int) -> dict[str, Any]:
        if size > MAX_REQUEST_BYTES:
            raise _data_error(
                413,
                "Your request is larger than the maximum supported size - 2MB. "
                "Please try to reduce your batch size.",
            )
        vectors = payload["vectors"]
        if not 1 <= len(vectors) <= MAX_UPSERT_VECTORS:
            raise _data_error(
                400, f"Upsert takes 1 to {MAX_UPSERT_VECTORS} vectors, got {len(vectors)}"
            )
        for vector in vectors:
            self._check_vector(vector)
        write = _Write(self._visible_at(), payload.get("namespace", ""))
        write.upserts = [
            {"id": v["id"], "values": list(v["values"]), "metadata": v.get("metadata")}
            for v in vectors
        ]
        self._enqueue(write)
        return {"upsertedCount": len(vectors)}

    def _check_vector(self, vector: dict[str, Any]) -> None:
        key = vector["id"]
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_ID_CHARS or not key.isascii():
            raise _data_error(400, f"Vector ID must be 1-{MAX_ID_CHARS} ASCII characters")
        values = vector["values"]
        if len(values) != self.dimension:
            raise _data_error(
                400,
                f"Vector dimension {len(values)} does not match the dimension of the index "
                f"{self.dimension}",
            )
        metadata = vector.get("metadata")
        if metadata is not None and _json_size(metadata) > MAX_METADATA_BYTES:
            raise _data_error(
                400,
                f"Metadata size is {_json_size(metadata)} bytes, which exceeds the limit of "
                f"{MAX_METADATA_BYTES} bytes per vector",
            )

    def _query(self, payload: dict[str, Any]) -> dict[str, Any]:
        vector = payload["vector"]
        if len(vector) != self.dimension:
            raise _data_error(
                400, f"Query vector dimension {len(vector)} does not match {self.dimension}"
            )
        top_k = payload["topK"]
        limit = 1000 if payload.get("includeMetadata") or payload.get("includeValues") else 10_000
        if not 1 <= top_k <= limit:
            raise _data_error(400, f"topK must be between 1 and {limit}, got {top_k}")
        namespace = payload.get("namespace", "")
        with self._lock:
            self._apply(time.monotonic())
            stored = list(self._stored.get(namespace, {}).values())
        scored = sorted(
            ((_cosine(vector, r["values"]), r) for r in stored), key=lambda p: p[0], reverse=True
        )
        matches = [_match(record, score, payload) for score, record in scored[:top_k]]
        return {
            "results": [],
            "matches": matches,
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }

    def _fetch(self, query: dict[str, list[str]]) -> dict[str, Any]:
        namespace = query.get("namespace", [""])[0]
        with self._lock:
            self._apply(time.monotonic())
            stored = self._stored.get(namespace, {})
            found = {key: _vector(stored[key]) for key in query.get("ids", []) if key in stored}
        return {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of ids under a prefix, in id order; the token is where the next page starts
        (opaque to clients: base64 of the last id given)."""
        namespace = query.get("namespace", [""])[0]
        prefix = query.get("prefix", [""])[0]
        limit = int(query.get("limit", [str(MAX_LIST_LIMIT)])[0])
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _data_error(400, f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        token = query.get("paginationToken", [""])[0]
        after = base64.urlsafe_b64decode(token).decode() if token else ""
        with self._lock:
            self._apply(time.monotonic())
            keys = sorted(k for k in self._stored.get(namespace, {}) if k.startswith(prefix))
        page = [key for key in keys if key > after][: limit + 1]
        answer: dict[str, Any] = {
            "vectors": [{"id": key} for key in page[:limit]],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if len(page) > limit:
            answer["pagination"] = {
                "next": base64.urlsafe_b64encode(page[limit - 1].encode()).decode()
            }
        return answer

    def _delete(self, payload: dict[str, Any]) -> dict[str, Any]:
        ids = payload.get("ids") or []
        if len(ids) > 1000:
            raise _data_error(400, f"Delete takes at most 1000 ids, got {len(ids)}")
        if payload.get("filter"):
            raise _data_error(400, "the stand-in does not delete by filter")
        write = _Write(self._visible_at(), payload.get("namespace", ""))
        write.deletes = list(ids)
        write.delete_all = bool(payload.get("deleteAll"))
        self._enqueue(write)
        return {}

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            self._apply(time.monotonic())
            counts = {ns or DEFAULT_NAMESPACE_KEY: len(r) for ns, r in self._stored.items() if r}
        return {
            "namespaces": {ns: {"vectorCount": count} for ns, count in counts.items()},
            "dimension": self.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": "cosine",
            "vectorType": "dense",
        }

    def _visible_at(self) -> float:
        return time.monotonic() + self.visibility_delay

    def _enqueue(self, write: _Write) -> None:
        with self._lock:
            self._pending.append(write)
            self._apply(time.monotonic())

    def _apply(self, now: float) -> None:
        """Apply, in order, the writes whose time has come (the lock is held)."""
        while self._pending and self._pending[0].visible_at <= now:
            write = self._pending.pop(0)
            stored = self._stored.setdefault(write.namespace, {})
            if write.delete_all:
                stored.clear()
            for key in write.deletes:
                stored.pop(key, None)
            for record in write.upserts:
                stored[record["id"]] = record

    # -- control plane ---------------------------------------------------------------------

    def _describe_index(self, name: str) -> dict[str, Any]:
        with self._lock:
            index = self.indexes.get(name)
        if index is None:
            raise _control_error(404, "NOT_FOUND", f"Resource {name} not found")
        return self._index_model(index)

    def _create_index(self, payload: dict[str, Any]) -> Any:
        name = payload["name"]
        field_ = payload["schema"]["fields"]["_values"]
        deployment = payload["deployment"]
        if field_["type"] != "dense_vector" or deployment["deployment_type"] != "managed":
            raise _control_error(400, "INVALID_ARGUMENT", "the stand-in makes dense indexes")
        with self._lock:
            if name in self.indexes:
                raise _control_error(409, "ALREADY_EXISTS", f"Resource {name} already exists")
            index = _Index(
                name,
                int(field_["dimension"]),
                deployment["cloud"],
                deployment["region"],
                time.monotonic() + self.ready_after,
            )
            self.indexes[name] = index
            # the one data plane this stand-in serves is the new index's
            self.dimension = index.dimension
        return self._index_model(index)

    def _index_model(self, index: _Index) -> dict[str, Any]:
        ready = time.monotonic() >= index.ready_at
        return {
            "name": index.name,
            "status": {"ready": ready, "state": "Ready" if ready else "Initializing"},
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": index.dimension,
                        "metric": "cosine",
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",
                "cloud": index.cloud,
                "region": index.region,
            },
            "deletion_protection": "disabled",
            "host": self.url if ready else None,
            "tags": None,
        }


def _describe(path: str, target: str, payload: Any) -> tuple[int, str | None]:
    """(items, namespace) of a data-plane request, for the record."""
    if path in ("/vectors/fetch", "/vectors/list"):
        query = parse_qs(urlsplit(target).query)
        return len(query.get("ids", [])), query.get("namespace", [""])[0]
    if not isinstance(payload, dict) or path not in DATA_PATHS:
        return 0, None
    items = payload.get("vectors") or payload.get("ids") or []
    return len(items), payload.get("namespace", "")


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0


def _vector(record: dict[str, Any]) -> dict[str, Any]:
    answer = {"id": record["id"], "values": record["values"]}
    if record["metadata"] is not None:
        answer["metadata"] = record["metadata"]
    return answer


def _match(record: dict[str, Any], score: float, payload: dict[str, Any]) -> dict[str, Any]:
    match: dict[str, Any] = {"id": record["id"], "score": score, "values": []}
    if payload.get("includeValues"):
        match["values"] = record["values"]
    if payload.get("includeMetadata") and record["metadata"] is not None:
        match["metadata"] = record["metadata"]
    return match


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up (a retrying client closes a 429 unread)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(standin: PineconeStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx pools connections
        timeout = 30  # an idle kept-alive connection frees its thread

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, answer = standin.handle(self.command, self.path, headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler

"""`make bench-index` (`python -m bench.index`): the embedded index (SQLite + sqlite-vec + FTS5,
with the media ledger) at 200 000 passages; writes docs/bench/index.json and re-renders
docs/benchmarks.md.

Steps, each measured in processes of its own:

- a. the embed worker (`streamscribe worker embed`, ONNX backend) on an embedded broker, storing a
  60-minute media (120 transcripts) into a copy of the pre-filled database: its peak RSS and the
  time to index;
- b. search latency in one process (`Index.search`, modes vector, keyword and hybrid, 50 queries),
  the whole `streamscribe search --json` command, and a numpy brute-force top-10 over the same
  vectors held in memory (the naive anchor);
- c. `streamscribe status MEDIA --json` and `Ledger.get` with 1 and with 1 000 media in the ledger;
- d. the peak RSS of a process that opens the index and runs the searches (vector and hybrid):
  the CLI's search path without the model.

The pre-filled database (generated English sentences, random unit vectors, written through
`SQLiteVectors.upsert` and `Ledger.store_chunk` by a child process) is kept under
bench/out/index/ and reused while its recorded shape matches.

Internal sub-commands (run as children, so that each peak RSS is one process's own):
`prefill DIR`, `ledger DIR MEDIA`, `search DIR QUERIES MODES`, `naive DIR QUERIES`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import numpy.typing as npt

from bench import render, results
from bench.peaks import high_water_mark, run_measured
from bench.stack import STREAMSCRIBE, free_port
from streamscribe.cli.supervisor import WORKER_MALLOC
from streamscribe.embed.store.index import CANDIDATES

OUT = Path("bench/out/index")
DB_NAME = "streamscribe.db"
PASSAGES = 200_000
DIMENSION = 384
CHUNK_PASSAGES = 8  # passages per chunk in the pre-fill
MEDIA_CHUNKS = 50  # chunks per media in the pre-fill: 25 000 chunks of 500 media
PREFILL_VERSION = 1  # bump when the pre-fill's content changes: the cached database is rebuilt
LEDGER_CHUNKS = 20  # chunks per media in the status ledgers
MEDIA_MINUTES = 60
CHUNK_SECONDS = 30
QUERIES = 50
K = 10
SEED = 20_260_101
HIT_COLUMNS = "id, media_id, source_url, start, end, text"


# --------------------------------------------------------------------------- generated text


def _pool(text: str) -> list[str]:
    """Words or phrases separated by `|`; line breaks inside a phrase are spaces."""
    return [" ".join(phrase.split()) for phrase in text.split("|")]


SUBJECTS = _pool(
    """the council|the mayor|our team|the committee|the engineers|a local farmer|the teacher|
the students|the doctors|the company|the museum|the orchestra|the city|my grandmother|the pilot|
the researchers|the government|the police|the volunteers|the board|the new manager|the director|
the scientists|the union|the bank|the hospital|the school|the library|the nurses|the workers|
the builders|the press|the minister|the lawyers|the judge|the club|the villagers|the tourists|
the coach|the players|the crew|the fishermen|the bakers|the artists|the designers|the editors|
the farmers|the neighbours|my brother|her sister|their parents|the chef|the landlord|the tenants|
the developers|the investors|the regulators|the auditors|the voters|the firefighters|
the drivers|the mechanics|the software team|the support staff|the sales team|the panel"""
)
VERBS = _pool(
    """approved|rejected|discussed|announced|built|repaired|replaced|opened|closed|moved|sold|
bought|measured|tested|designed|planned|delayed|cancelled|funded|reviewed|published|described|
explained|questioned|defended|criticised|supported|changed|improved|cleaned|painted|visited|
found|lost|won|shared|recorded|counted|collected|organised|launched|finished|started|studied|
proposed|doubled|reduced|increased|protected|restored|inspected|mapped|predicted|tracked|
compared|welcomed|hired|trained|warned|promised|presented|ignored|noticed|explored"""
)
ADJECTIVES = _pool(
    """new|old|small|large|public|private|local|national|early|late|final|first|quiet|
busy|cheap|expensive|famous|simple|complex|modern|ancient|northern|southern|eastern|western|
wooden|stone|green|yellow|red|blue|narrow|wide|long|short|heavy|light|strong|weak|safe|
dangerous|popular|rare|annual|monthly|weekly|digital|electric|rural|urban|coastal|frozen|
warm|cold|empty|crowded|broken|temporary|permanent|official|secret|difficult|obvious|careful|
ambitious|modest|generous|strict|fragile|reliable|unusual|remarkable"""
)
NOUNS = _pool(
    """bridge|budget|report|harbour|station|garden|library|hospital|school|road|river|
market|festival|concert|museum|bakery|factory|farm|orchard|forest|island|lighthouse|village|
tunnel|canal|airport|stadium|theatre|cinema|church|castle|tower|park|beach|valley|mountain|
lake|railway|highway|cycle path|parking lot|power line|water supply|tax plan|contract|proposal|
election|vote|survey|study|experiment|prototype|robot|engine|battery|server|database|network|
website|app|camera|sensor|satellite|telescope|map|painting|recipe|novel|chapter|symphony|
exhibition|match|tournament|season|harvest|storm|flood|drought|fire|earthquake|heatwave|
winter|summer|spring|autumn|deadline|meeting|interview|lecture|workshop|course|exam|
scholarship|salary|pension|loan|mortgage|price|rent|invoice|warehouse|shipment|delivery|
container|truck|ferry|bus lane|train|tram|bicycle|helmet|uniform|ticket|passport|border|
customs office|treaty|agreement|policy|strategy|schedule|timeline|roadmap|release|update|
feature|bug|outage|incident|backup|migration|audit|license|patent|trademark|merger|
acquisition|startup|charity|donation|grant|scheme|pilot project|clinic|vaccine|trial|
diagnosis|treatment|ward|ambulance|pharmacy|menu|kitchen|restaurant|hotel|campsite|trail|
glacier|volcano|coral reef|wetland|meadow|vineyard|greenhouse|barn|well|dam|reservoir|
wind farm|solar panel|heat pump|boiler|chimney|roof|basement|staircase|elevator|corridor|
classroom|laboratory|studio|gallery|archive|manuscript|letter|diary|photograph|film|podcast|
broadcast|newspaper|magazine|headline|rumour|scandal|protest|strike|negotiation|settlement|
verdict|appeal|hearing|inquiry|investigation|warrant|fine|penalty|reward|prize|medal|
trophy|record|score|goal|penalty kick|referee|stadium roof|pitch"""
)
PLACES = _pool(
    """in the city centre|near the harbour|along the river|on the northern island|in the
old town|across the valley|at the central station|behind the town hall|by the coast|in the
mountains|on the west side|in the industrial zone|outside the village|at the university|near
the airport|in the southern district|on the main square|by the lake|in the business park|at
the border"""
)
TIMES = _pool(
    """last year|this morning|in the spring|after the storm|before the election|during the
summer|next month|over the weekend|in the last quarter|at the end of the meeting|two weeks
ago|since the pandemic|by the end of the decade|on Friday evening|after the holidays|earlier
this week|in the first half|before sunrise|late at night|within an hour"""
)
INTROS = _pool(
    """To be honest,|As we discussed earlier,|According to the report,|In the end,|On the
other hand,|For example,|At first,|Surprisingly,|As a result,|In my view,|Frankly,|To put it
simply,|So basically,|Meanwhile,|However,|Of course,|In fact,|Later on,|Most importantly,|If
I remember correctly,"""
)
LINKS = _pool(
    """and|but|because|while|so|although|after|before|until|since|and then|which means
that|even though|as soon as|whereas|so that|and meanwhile|but in the end"""
)
NUMBERS = _pool(
    """two|three|four|five|six|ten|twelve|twenty|fifty|a hundred|several|many|a few|
dozens of|hundreds of|thousands of"""
)
QUESTIONS = (
    "what did {s} say about the {a} {n}",
    "why was the {n} {v}",
    "who {v} the {a} {n} {p}",
    "the {n} {p} {t}",
    "how much did the {a} {n} cost",
    "{s} {v} the {n}",
    "when will the {n} be {v}",
    "problems with the {a} {n} and the {n2}",
)


class Sentences:
    """English-like sentences of 15-40 words from a small grammar over ~500 words and phrases,
    drawn with Zipf-like weights (a few words are common, most are rare, as in speech), so that
    FTS5 sees a realistic spread of term frequencies. Deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pools = {
            "s": SUBJECTS, "v": VERBS, "a": ADJECTIVES, "n": NOUNS, "p": PLACES, "t": TIMES,
            "i": INTROS, "l": LINKS, "q": NUMBERS,
        }  # fmt: skip
        self.weights = {}
        for name, pool in self.pools.items():
            order = list(range(len(pool)))
            self.rng.shuffle(order)  # which words are common differs per pool
            ranks = {index: rank for rank, index in enumerate(order)}
            self.weights[name] = [1.0 / (ranks[i] + 1) ** 0.8 for i in range(len(pool))]

    def word(self, pool: str) -> str:
        return self.rng.choices(self.pools[pool], self.weights[pool])[0]

    def _object(self) -> str:
        roll = self.rng.random()
        if roll < 0.4:
            return f"the {self.word('a')} {self.word('n')}"
        if roll < 0.6:
            return f"{self.word('q')} {self.word('n')}s"
        return f"the {self.word('n')}"

    def clause(self) -> str:
        parts = [self.word("s"), self.word("v"), self._object()]
        if self.rng.random() < 0.6:
            parts.append(self.word("p"))
        if self.rng.random() < 0.4:
            parts.append(self.word("t"))
        return " ".join(parts)

    def sentence(self, low: int = 15, high: int = 40) -> str:
        while True:
            target = self.rng.randint(low, high)
            parts = [self.word("i")] if self.rng.random() < 0.3 else []
            parts.append(self.clause())
            while sum(len(part.split()) for part in parts) < target:
                parts += [self.word("l"), self.clause()]
            text = " ".join(parts)
            if low <= len(text.split()) <= high:
                text = text[0].upper() + text[1:] + "."
                return text.replace(" and.", ".")

    def query(self) -> str:
        template = self.rng.choice(QUESTIONS)
        return template.format(
            s=self.word("s"), v=self.word("v"), a=self.word("a"), n=self.word("n"),
            n2=self.word("n"), p=self.word("p"), t=self.word("t"),
        )  # fmt: skip


def unit_vectors(rng: np.random.Generator, rows: int) -> npt.NDArray[np.float32]:
    matrix = rng.standard_normal((rows, DIMENSION)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def transcripts(
    media_id: str, run: str, chunks: int, sentences: Sentences, segments: tuple[int, int]
) -> list[Any]:
    """`chunks` transcripts of CHUNK_SECONDS each, the last one final with the chunk count."""
    from streamscribe.common.events import Segment, Transcript

    url = f"https://media.example.org/{media_id}.mp3"
    made = []
    for seq in range(chunks):
        start = float(seq * CHUNK_SECONDS)
        count = sentences.rng.randint(*segments)
        step = CHUNK_SECONDS / count
        made.append(
            Transcript(
                media_id=media_id,
                seq=seq,
                start=start,
                end=start + CHUNK_SECONDS,
                final=seq == chunks - 1,
                chunk_count=chunks if seq == chunks - 1 else None,
                source_url=url,
                language="en",
                run=run,
                segments=[
                    Segment(
                        start=start + i * step,
                        end=start + (i + 1) * step,
                        text=sentences.sentence(),
                    )
                    for i in range(count)
                ],
            )
        )
    return made


# --------------------------------------------------------------------------- children


def prefill(directory: Path) -> None:
    """Write PASSAGES passages (CHUNK_PASSAGES per chunk, MEDIA_CHUNKS chunks per media) and their
    ledger rows through the store's own write path, then record the shape in prefill.json."""
    from streamscribe.common.events import Segment, Transcript
    from streamscribe.embed.passages import Passage, passage_id
    from streamscribe.embed.store.ledger import Ledger
    from streamscribe.embed.store.sqlite import SQLiteVectors

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    path = directory / DB_NAME
    vectors, ledger = SQLiteVectors(path), Ledger(path)
    sentences, rng = Sentences(SEED), np.random.default_rng(SEED)
    started = time.monotonic()
    chunks = PASSAGES // CHUNK_PASSAGES
    for number in range(chunks):
        media_id, seq = f"m-prefill-{number // MEDIA_CHUNKS:05d}", number % MEDIA_CHUNKS
        final = seq == MEDIA_CHUNKS - 1 or number == chunks - 1
        start = float(seq * CHUNK_SECONDS)
        step = CHUNK_SECONDS / CHUNK_PASSAGES
        transcript = Transcript(
            media_id=media_id, seq=seq, start=start, end=start + CHUNK_SECONDS, final=final,
            chunk_count=seq + 1 if final else None, language="en", run="0000000000000-prefill",
            source_url=f"https://media.example.org/{media_id}.mp3",
            segments=[
                Segment(start=start + i * step, end=start + (i + 1) * step,
                        text=sentences.sentence())
                for i in range(CHUNK_PASSAGES)
            ],
        )  # fmt: skip
        passages = [
            Passage(
                id=passage_id(transcript.chunk_id, i),
                media_id=media_id,
                seq=seq,
                index=i,
                start=segment.start,
                end=segment.end,
                text=segment.text,
            )
            for i, segment in enumerate(transcript.segments)
        ]
        vectors.upsert(passages, unit_vectors(rng, len(passages)), transcript.source_url, [])
        ledger.store_chunk(transcript, len(passages))
    seconds = time.monotonic() - started
    counts = vectors.counts()
    vectors.close()
    ledger.close()
    checkpoint(path)
    media = scalar(path, "SELECT count(*) FROM media")
    shape = _prefill_shape() | {
        "seconds": round(seconds, 1),
        "counts": counts,
        "media": media,
        "bytes": path.stat().st_size,
    }
    (directory / "prefill.json").write_text(json.dumps(shape, indent=2))


def checkpoint(path: Path) -> None:
    """Fold the WAL into the database file, so one file holds everything (and copies whole)."""
    database = apsw.Connection(str(path))
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()


def build_ledger(directory: Path, media: int) -> None:
    """A ledger (no passages) of `media` indexed media of LEDGER_CHUNKS chunks each."""
    from streamscribe.embed.store.ledger import Ledger

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    ledger = Ledger(directory / DB_NAME)
    sentences = Sentences(SEED + media)
    for number in range(media):
        for transcript in transcripts(
            status_media(number), "0000000000000-ledger", LEDGER_CHUNKS, sentences, (8, 10)
        ):
            ledger.store_chunk(transcript, len(transcript.segments))
    ledger.close()
    checkpoint(directory / DB_NAME)
    (directory / "ledger.json").write_text(json.dumps({"media": media, "chunks": LEDGER_CHUNKS}))


def status_media(number: int) -> str:
    return f"m-status-{number:05d}"


def search_child(directory: Path, queries_path: Path, modes: Sequence[str]) -> None:
    """Open the index as the CLI does, run every query in every mode; print the latencies."""
    from streamscribe.embed.settings import EmbedSettings, SQLiteSection
    from streamscribe.embed.store.base import SearchMode
    from streamscribe.embed.store.factory import open_index
    from streamscribe.embed.store.sqlite import fts_query

    texts, vectors = load_queries(queries_path)
    settings = EmbedSettings(data_dir=directory, sqlite=SQLiteSection(path=directory / DB_NAME))
    index = open_index(settings, DIMENSION)
    seconds: dict[str, list[float]] = {}
    hits: dict[str, int] = {}
    try:
        for mode_name in modes:
            mode: SearchMode = mode_name  # type: ignore[assignment]
            index.search("warm up the page cache", vectors[-1], K, mode)  # not counted
            seconds[mode_name], hits[mode_name] = [], 0
            for text, vector in zip(texts, vectors, strict=True):
                started = time.perf_counter()
                found = index.search(text, vector, K, mode)
                seconds[mode_name].append(time.perf_counter() - started)
                hits[mode_name] += len(found)
    finally:
        index.close()
    matched = []  # how many passages each keyword query matches: what BM25 has to score
    if "keyword" in modes:
        database = apsw.Connection(str(directory / DB_NAME), flags=apsw.SQLITE_OPEN_READONLY)
        for text in texts:
            count: Any = database.execute(
                "SELECT count(*) FROM passages_fts WHERE passages_fts MATCH ?", (fts_query(text),)
            ).fetchall()[0][0]
            matched.append(int(count))
        database.close()
    print(json.dumps({"seconds": seconds, "hits": hits, "matched": matched}))


def naive_child(directory: Path, queries_path: Path) -> None:
    """The naive anchor: every vector read into one numpy matrix, top-K by dot product (the
    vectors are unit length: cosine), then the K passages' rows read by rowid."""
    _, queries = load_queries(queries_path)
    database = apsw.Connection(str(directory / DB_NAME), flags=apsw.SQLITE_OPEN_READONLY)
    database.enable_load_extension(True)
    import sqlite_vec

    database.load_extension(sqlite_vec.loadable_path())
    started = time.perf_counter()
    count: Any = database.execute("SELECT count(*) FROM passages_vec").fetchall()[0][0]
    rows = int(count)
    matrix = np.empty((rows, DIMENSION), dtype=np.float32)
    rowids = np.empty(rows, dtype=np.int64)
    for i, (rowid, blob) in enumerate(
        database.execute("SELECT rowid, embedding FROM passages_vec")
    ):
        rowids[i] = rowid
        matrix[i] = np.frombuffer(blob, dtype=np.float32)
    load = time.perf_counter() - started
    seconds = []
    for query in queries:
        started = time.perf_counter()
        scores = matrix @ query
        best = np.argpartition(-scores, K)[:K]
        best = best[np.argsort(-scores[best])]
        ids = ",".join(str(int(rowids[i])) for i in best)
        found = database.execute(f"SELECT {HIT_COLUMNS} FROM passages WHERE rowid IN ({ids})")
        assert len(found.fetchall()) == K
        seconds.append(time.perf_counter() - started)
    database.close()
    print(json.dumps({"seconds": seconds, "load_seconds": load, "rows": rows}))


def load_queries(path: Path) -> tuple[list[str], npt.NDArray[np.float32]]:
    with np.load(path) as data:
        return [str(text) for text in data["texts"]], np.asarray(data["vectors"], np.float32)


# --------------------------------------------------------------------------- the steps


def child(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.index", *args]


def ensure_prefill(directory: Path) -> dict[str, Any]:
    meta = directory / "prefill.json"
    if meta.exists() and (directory / DB_NAME).exists():
        shape = json.loads(meta.read_text())
        if {key: shape.get(key) for key in _prefill_shape()} == _prefill_shape():
            return dict(shape)
    print(f"pre-filling {directory} with {PASSAGES} passages ...", file=sys.stderr, flush=True)
    subprocess.run(child("prefill", str(directory)), check=True)
    return dict(json.loads(meta.read_text()))


def _prefill_shape() -> dict[str, int]:
    return {
        "version": PREFILL_VERSION,
        "passages": PASSAGES,
        "dimension": DIMENSION,
        "chunk_passages": CHUNK_PASSAGES,
        "media_chunks": MEDIA_CHUNKS,
    }


def ensure_ledger(directory: Path, media: int) -> None:
    meta = directory / "ledger.json"
    if meta.exists() and json.loads(meta.read_text()) == {"media": media, "chunks": LEDGER_CHUNKS}:
        return
    subprocess.run(child("ledger", str(directory), str(media)), check=True)


def onnx_model_dir() -> Path:
    """The ONNX export the repository's data dir holds (made by `make install`), so that the
    worker and the CLI do not export the model again into each benchmark data dir."""
    from streamscribe.common.settings import CommonSettings
    from streamscribe.embed.embedder import onnx_dir, resolve_model
    from streamscribe.embed.onnx_export import ensure_exported
    from streamscribe.embed.settings import EmbedSection

    section = EmbedSection()
    directory = onnx_dir(section, CommonSettings().data_dir).resolve()
    ensure_exported(resolve_model(section), directory)
    return directory


def embed_queries(path: Path, model_dir: Path) -> str:
    """QUERIES generated questions, embedded by the real model (ONNX int8)."""
    from streamscribe.embed.embedder import load_embedder
    from streamscribe.embed.settings import EmbedSection

    sentences = Sentences(SEED + 1)
    texts = [sentences.query() for _ in range(QUERIES)]
    embedder = load_embedder(EmbedSection(onnx_dir=model_dir), Path("data"))
    vectors = embedder.embed(texts)
    np.savez(path, texts=np.array(texts), vectors=vectors)
    return "the 50 generated questions embedded by the real model (ONNX int8)"


@dataclass
class WorkerRun:
    peak: int
    peak_ready: int  # VmHWM once ready: model loaded, index open, consumer joined
    index_seconds: float
    passages: int
    stored_after: int


def env_for(data: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAMSCRIBE_DATA_DIR": str(data),
        "STREAMSCRIBE_TEMP_ROOT": str(data / "tmp"),
        "STREAMSCRIBE_EMBED__ONNX_DIR": str(model_dir),
        "STREAMSCRIBE_LOG_LEVEL": "WARNING",
        **extra,
    }


def measure_worker(base: Path, model_dir: Path) -> WorkerRun:
    """a: one embed worker, alone on an embedded broker, storing a 60-minute media into a copy
    of the pre-filled database."""
    from streamscribe.cli.broker import EmbeddedBroker
    from streamscribe.common.events import new_run
    from streamscribe.embed.store.ledger import Ledger

    data = OUT / f"run-{uuid.uuid4().hex[:6]}"
    data.mkdir(parents=True)
    kafka_port, http_port = free_port(), free_port()
    prefix = f"bench-index-{uuid.uuid4().hex[:8]}."
    env = env_for(
        data,
        model_dir,
        **WORKER_MALLOC,  # as `up` gives its workers
        STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        STREAMSCRIBE_TOPICS__PREFIX=prefix,
        STREAMSCRIBE_EMBED__HTTP_PORT=str(http_port),
    )
    broker = EmbeddedBroker("127.0.0.1", kafka_port, OUT / "logs" / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        shutil.copyfile(base / DB_NAME, data / DB_NAME)
        asyncio.run(broker.start())
        with (OUT / "logs" / "embed-worker.log").open("w") as log:
            worker = subprocess.Popen(
                [STREAMSCRIBE, "worker", "embed"], env=env, stdout=log, stderr=log
            )
        _until_ready(worker, http_port, deadline=600)
        peak_ready = high_water_mark(worker.pid)
        media_id, run = f"m-bench-{uuid.uuid4().hex[:8]}", new_run()
        chunks = MEDIA_MINUTES * 60 // CHUNK_SECONDS
        made = transcripts(media_id, run, chunks, Sentences(SEED + 2), (8, 10))
        started = time.time()
        asyncio.run(_publish(f"127.0.0.1:{kafka_port}", prefix, made))
        ledger = Ledger(data / DB_NAME)
        try:
            record = _until_indexed(ledger, media_id, worker, deadline=1800)
        finally:
            ledger.close()
        assert record.indexed_at is not None
        peak = high_water_mark(worker.pid)
        stored = scalar(data / DB_NAME, "SELECT count(*) FROM passages")
        return WorkerRun(peak, peak_ready, record.indexed_at - started, record.passages, stored)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        asyncio.run(broker.stop())
        shutil.rmtree(data, ignore_errors=True)


async def _publish(bootstrap: str, prefix: str, made: Sequence[Any]) -> None:
    """The media's request, then its transcripts, as the pipeline's producers publish them."""
    from aiokafka import AIOKafkaProducer

    from streamscribe.common.events import MediaRequested, encode_event
    from streamscribe.common.settings import TopicSettings

    topics = TopicSettings(prefix=prefix)
    first = made[0]
    key = first.media_id.encode()
    headers = [("content-type", b"application/json")]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        request = MediaRequested(url=first.source_url, media_id=first.media_id, run=first.run)
        await producer.send_and_wait(
            topics.requested, encode_event(request), key=key, headers=headers
        )
        for transcript in made:
            await producer.send(
                topics.transcript, encode_event(transcript), key=key, headers=headers
            )
        await producer.flush()
    finally:
        await producer.stop()


def scalar(path: Path, sql: str) -> int:
    database = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        value: Any = database.execute(sql).fetchall()[0][0]
        return int(value)
    finally:
        database.close()


def _until_ready(worker: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if worker.poll() is not None:
            raise RuntimeError(f"embed worker exited ({worker.returncode}): see {OUT / 'logs'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("embed worker not ready in time")


def _until_indexed(
    ledger: Any, media_id: str, worker: subprocess.Popen[bytes], deadline: float
) -> Any:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        record = ledger.get(media_id)
        if record is not None and record.state == "indexed":
            return record
        if record is not None and record.state == "failed":
            raise RuntimeError(f"{media_id} failed: {record.failure}")
        if worker.poll() is not None:
            raise RuntimeError(f"embed worker exited ({worker.returncode}): see {OUT / 'logs'}")
        time.sleep(0.2)
    raise RuntimeError(f"{media_id} not indexed in {deadline:.0f}s")


@dataclass
class Latency:
    p50: float
    p95: float
    peak: int = 0


def latency(seconds: Sequence[float], peak: int = 0) -> Latency:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Latency(statistics.median(ordered), p95, peak)


@dataclass
class Searched:
    latency: dict[str, Latency]
    hits: dict[str, int]
    matched: list[int]  # passages each keyword query matches


def measure_search(base: Path, queries: Path) -> Searched:
    """b: Index.search in a process of its own, every mode."""
    result = run_measured(child("search", str(base), str(queries), "vector,keyword,hybrid"))
    if result.returncode != 0:
        raise RuntimeError("search child failed")
    data = json.loads(result.stdout)
    modes = {mode: latency(s) for mode, s in data["seconds"].items()}
    return Searched(modes, data["hits"], data["matched"])


def measure_search_peak(base: Path, queries: Path) -> Latency:
    """d: the peak RSS of a process that opens the index and runs the vector and hybrid
    searches, as the CLI does minus the model."""
    result = run_measured(child("search", str(base), str(queries), "vector,hybrid"))
    if result.returncode != 0:
        raise RuntimeError("search child failed")
    data = json.loads(result.stdout)
    return latency(data["seconds"]["hybrid"], result.peak_bytes)


def measure_naive(base: Path, queries: Path) -> tuple[Latency, float]:
    result = run_measured(child("naive", str(base), str(queries)))
    if result.returncode != 0:
        raise RuntimeError("naive child failed")
    data = json.loads(result.stdout)
    return latency(data["seconds"], result.peak_bytes), float(data["load_seconds"])


def wall(command: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time of one whole process (plain timing: no sampling thread beside it)."""
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return seconds, result.stdout


def measure_cli(args: Sequence[str], env: dict[str, str], times: int) -> tuple[float, int]:
    """Median wall time of `times` runs of a whole CLI process (after one run not counted, which
    fills the OS caches), and the peak RSS of one more run."""
    command = [STREAMSCRIBE, *args]
    wall(command, env)
    median = statistics.median(wall(command, env)[0] for _ in range(times))
    return median, run_measured(command, env=env).peak_bytes


@contextmanager
def api_serving(directory: Path, model_dir: Path) -> Iterator[str]:
    """The HTTP API on `directory`'s index, with the real model, served from this process:
    what `search` and `status` ask (in a stack, embed serves it). Yields its URL."""
    from faststream.kafka import KafkaBroker
    from tests.api_server import api_on, serving

    from streamscribe.embed.embedder import load_embedder
    from streamscribe.embed.settings import EmbedSection

    embedder = load_embedder(EmbedSection(onnx_dir=model_dir), directory)
    with serving(api_on(directory, KafkaBroker(), embedder=embedder)) as url:
        yield url


def measure_http_search(url: str, texts: Sequence[str]) -> list[float]:
    """`GET /search` (hybrid, k=10) alone, each query once after one not counted: the API
    embeds the query with its loaded model and searches the 200 000 passages."""

    def one(text: str) -> float:
        query = urllib.parse.urlencode({"q": text, "k": 10, "mode": "hybrid"})
        started = time.monotonic()
        with urllib.request.urlopen(f"{url}/search?{query}", timeout=120) as response:
            response.read()
        return time.monotonic() - started

    one(texts[0])
    return [one(text) for text in texts]


def measure_status(model_dir: Path) -> dict[int, tuple[float, float]]:
    """c: `status MEDIA --json` (whole process, median of 7, the two ledgers taking turns so
    that a change of machine load hits both) and Ledger.get in-process (median of 2 000), on
    ledgers of 1 and of 1 000 media."""
    from streamscribe.embed.store.ledger import Ledger

    sizes = (1, 1000)
    commands: dict[int, list[str]] = {}
    envs: dict[int, dict[str, str]] = {}
    cli: dict[int, list[float]] = {}
    with ExitStack() as servers:
        for media in sizes:
            directory = OUT / f"ledger-{media}"
            ensure_ledger(directory, media)
            url = servers.enter_context(api_serving(directory, model_dir))
            commands[media] = [STREAMSCRIBE, "status", status_media(media // 2), "--json"]
            envs[media] = env_for(directory, model_dir, STREAMSCRIBE_API_URL=url)
            _, stdout = wall(commands[media], envs[media])  # not counted
            assert json.loads(stdout)["state"] == "indexed", stdout
            cli[media] = []
        for _ in range(7):
            for media in sizes:
                cli[media].append(wall(commands[media], envs[media])[0])
    found: dict[int, tuple[float, float]] = {}
    for media in sizes:
        ledger = Ledger(OUT / f"ledger-{media}" / DB_NAME)
        try:
            gets = []
            for _ in range(2000):
                started = time.perf_counter()
                assert ledger.get(status_media(media // 2)) is not None
                gets.append(time.perf_counter() - started)
        finally:
            ledger.close()
        found[media] = (statistics.median(cli[media]), statistics.median(gets))
    return found


# --------------------------------------------------------------------------- the report


def wait_for_quiet(limit: float = 0.5, patience: float = 600) -> None:
    """Wait (at most `patience` seconds) until the machine is idle enough to time things."""
    give_up = time.monotonic() + patience
    if results.load_average() > limit:
        print(f"waiting for the 1-min load average to drop under {limit} ...", file=sys.stderr)
    while results.load_average() > limit and time.monotonic() < give_up:
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--patience", type=float, default=600, help="Seconds to wait for a quiet machine."
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("prefill").add_argument("directory", type=Path)
    ledger = sub.add_parser("ledger")
    ledger.add_argument("directory", type=Path)
    ledger.add_argument("media", type=int)
    search = sub.add_parser("search")
    search.add_argument("directory", type=Path)
    search.add_argument("queries", type=Path)
    search.add_argument("modes")
    naive = sub.add_parser("naive")
    naive.add_argument("directory", type=Path)
    naive.add_argument("queries", type=Path)
    args = parser.parse_args()
    if args.command == "prefill":
        prefill(args.directory)
    elif args.command == "ledger":
        build_ledger(args.directory, args.media)
    elif args.command == "search":
        search_child(args.directory, args.queries, args.modes.split(","))
    elif args.command == "naive":
        naive_child(args.directory, args.queries)
    else:
        run_all(args.patience)


def run_all(patience: float = 600) -> None:
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    base = OUT / f"prefill-{PASSAGES}"
    shape = ensure_prefill(base)
    model_dir = onnx_model_dir()
    queries_path = OUT / "queries.npz"
    queries = embed_queries(queries_path, model_dir)
    wait_for_quiet(patience=patience)
    given = " ".join(sys.argv[1:])  # as run: `python -m bench.index` with these arguments
    command = f"python -m bench.index {given}" if given else "make bench-index"
    settings = {"command": command, "patience": patience, "passages": PASSAGES,
                "dimension": DIMENSION, "queries": QUERIES, "query_source": queries, "k": K,
                "candidates": CANDIDATES, "ledger_chunks": LEDGER_CHUNKS,
                "media_minutes": MEDIA_MINUTES}  # fmt: skip
    run = results.started(settings)
    print("a. embed worker ...", file=sys.stderr, flush=True)
    worker = measure_worker(base, model_dir)
    print("b. search ...", file=sys.stderr, flush=True)
    search = measure_search(base, queries_path)
    with api_serving(base, model_dir) as url:
        cli_search, cli_peak = measure_cli(
            ["search", "what did the council decide about the new bridge", "--json"],
            env_for(base, model_dir, STREAMSCRIBE_API_URL=url),
            5,
        )
        http_search = measure_http_search(url, load_queries(queries_path)[0])
    naive, naive_load = measure_naive(base, queries_path)
    print("c. status ...", file=sys.stderr, flush=True)
    status = measure_status(model_dir)
    importing = [sys.executable, "-c", "import streamscribe.cli.main"]
    cli_import = statistics.median(wall(importing, dict(os.environ))[0] for _ in range(7))
    print("d. search peak ...", file=sys.stderr, flush=True)
    search_peak = measure_search_peak(base, queries_path)
    figures = {
        "shape": shape, "worker": asdict(worker), "search": asdict(search),
        "cli_search_seconds": cli_search, "cli_search_peak_bytes": cli_peak,
        "http_search_seconds": http_search,
        "naive": asdict(naive), "naive_load_seconds": naive_load,
        "search_peak": asdict(search_peak),
        "status": {str(media): {"cli_seconds": cli, "get_seconds": get}
                   for media, (cli, get) in status.items()},
        "cli_import_seconds": cli_import,
    }  # fmt: skip
    results.finish("index", run, figures)
    render.main()


if __name__ == "__main__":
    main()

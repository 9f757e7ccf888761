"""`make bench-scale` (`python -m bench.scale [--minutes 30]`): what a second transcribe worker
buys on one media. The media's chunks are published once (`streamscribe submit FILE`, keyed
`media_id:seq`, spread over the partitions of media.audio), then copied, partition for partition,
under a fresh topic prefix for each configuration: 1 worker x 1 thread, 2 workers x 1 thread,
1 worker x 2 threads. The workers start and join their group first; the wall time runs from the
copy to the last chunk transcribed. Per worker: chunks taken (its own counter) and peak RSS (the
kernel's high-water mark); the words of the transcripts it published and the audio seconds of
the chunks, so that what was transcribed is counted, not assumed. The configurations alternate
over `--rounds` (2); the report keeps each one's fastest. On a shared machine, run it in a cpu
cgroup weighted above the rest (the results record it):
  mkdir /sys/fs/cgroup/cpu/bench; echo 16384 > /sys/fs/cgroup/cpu/bench/cpu.shares
  echo $$ > /sys/fs/cgroup/cpu/bench/cgroup.procs; make bench-scale
Writes docs/bench/scale.json and re-renders docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import render, results
from bench.index import wait_for_quiet
from bench.media import speech_of_minutes
from bench.peaks import high_water_mark
from bench.stack import CHUNKS_DONE, STREAMSCRIBE, free_port, scrape
from streamscribe.cli.broker import EmbeddedBroker
from streamscribe.cli.supervisor import WORKER_MALLOC

OUT = Path("bench/out")
PARTITIONS = 6
CONFIGS = ((1, 1), (2, 1), (1, 2))  # (workers, threads each)
READY_TIMEOUT = 300.0


Record = tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Published:
    prefix: str
    media_id: str
    chunks: int
    partitions: dict[int, int]  # partition -> chunks of the media in it
    records: list[Record]  # read once, so the timed copy only sends

    def summary(self) -> dict[str, object]:
        """What the chunks hold: their count, partitions and the audio seconds they cover."""
        chunks = [json.loads(value) for _, _, value, _ in self.records]
        return {
            "chunks": self.chunks,
            "partitions": self.partitions,
            "audio_seconds": sum(c["end"] - c["start"] for c in chunks),
            "media_end_seconds": max(c["end"] for c in chunks),
        }


@dataclass(frozen=True)
class Worker:
    chunks: int
    peak_bytes: int


@dataclass(frozen=True)
class Result:
    workers: int
    threads: int
    seconds: float
    per_worker: list[Worker]
    transcripts: int  # published to media.transcript, read back after the run
    words: int  # in those transcripts
    transcribed_seconds: float  # the chunk spans those transcripts cover


def publish(bootstrap: str, media: Path, data: Path) -> Published:
    """Chunk and publish the media once, under a prefix nothing consumes."""
    prefix = f"scale-src-{uuid.uuid4().hex[:6]}."
    env = environment(bootstrap, prefix, data)
    result = subprocess.run(
        [STREAMSCRIBE, "submit", str(media)], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"submit failed: {result.stderr[-2000:]}")
    media_id = result.stdout.strip().splitlines()[-1]
    expected = int(re.search(r"published (\d+) chunks", result.stderr)[1])  # type: ignore[index]
    records = asyncio.run(read_exactly(bootstrap, f"{prefix}media.audio", expected))
    partitions = Counter(partition for partition, *_ in records)
    return Published(prefix, media_id, len(records), dict(sorted(partitions.items())), records)


async def read_exactly(bootstrap: str, topic: str, expected: int) -> list[Record]:
    """All `expected` records of the topic. Tansu's first answers about a topic just written to
    may list no partition or offsets of 0, so a short read is read again."""
    records: list[Record] = []
    for _ in range(20):
        if len(records := await read_all(bootstrap, topic)) == expected:
            return records
        await asyncio.sleep(2)
    raise RuntimeError(f"{len(records)} of {expected} records found in {topic}")


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        found: set[int] = set()
        for _ in range(60):  # the first metadata answer may not list a topic just written to
            await consumer.topics()  # fetches the metadata partitions_for_topic reads
            if found := consumer.partitions_for_topic(topic) or set():
                break
            await asyncio.sleep(0.5)
        parts = [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Record] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=2000)
            for tp, messages in batch.items():
                records += [(tp.partition, m.key, m.value, list(m.headers)) for m in messages]
        return records
    finally:
        await consumer.stop()


async def copy(bootstrap: str, records: list[Record], target: str) -> None:
    """Every published record into the same partition of `target`, as fast as it goes."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2**21)
    await producer.start()
    try:
        await partitions_known(producer, target)
        sent = [
            await producer.send(target, value, key=key, partition=partition, headers=headers)
            for partition, key, value, headers in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def partitions_known(producer: AIOKafkaProducer, topic: str) -> None:
    """The producer's metadata lists every partition of the workers' topic: sending to a
    partition it does not know yet fails ("Unrecognized partition")."""
    for _ in range(120):
        if len(await producer.partitions_for(topic)) >= PARTITIONS:
            return
        await asyncio.sleep(0.5)
        await producer.client.force_metadata_update()
    raise RuntimeError(f"{topic} has fewer than {PARTITIONS} partitions")


def environment(bootstrap: str, prefix: str, data: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **WORKER_MALLOC,  # as `up` gives its workers
        "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSCRIBE_TOPICS__PREFIX": prefix,
        "STREAMSCRIBE_TOPICS__PARTITIONS": str(PARTITIONS),
        "STREAMSCRIBE_DATA_DIR": str(data),  # the int8 model copy, written once for all
        "STREAMSCRIBE_TEMP_ROOT": str(data / "tmp"),
        "STREAMSCRIBE_LOG_LEVEL": "WARNING",
        **extra,
    }


def measure(bootstrap: str, published: Published, workers: int, threads: int) -> Result:
    prefix = f"scale-{workers}x{threads}-{uuid.uuid4().hex[:6]}."
    data, log = OUT / "scale-data", OUT / "logs" / f"scale-{workers}x{threads}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        processes: list[tuple[subprocess.Popen[bytes], int]] = []
        for _ in range(workers):
            port = free_port()
            env = environment(
                bootstrap, prefix, data,
                STREAMSCRIBE_TRANSCRIBE__CPU_THREADS=str(threads),
                STREAMSCRIBE_TRANSCRIBE__HTTP_PORT=str(port),
                STREAMSCRIBE_TRANSCRIBE__GROUP_ID=f"{prefix}transcribe",
            )  # fmt: skip
            out = stack.enter_context(log.open("a"))
            process = subprocess.Popen(
                [STREAMSCRIBE, "worker", "transcribe"], env=env, stdout=out, stderr=out
            )
            stack.callback(stop, process)
            processes.append((process, port))
        wait_ready(processes, log)
        started = time.monotonic()
        asyncio.run(copy(bootstrap, published.records, f"{prefix}media.audio"))
        deadline = started + 6 * 3600
        while sum(scrape(port, CHUNKS_DONE) for _, port in processes) < published.chunks:
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in processes):
                raise RuntimeError(f"{workers}x{threads}: not every chunk transcribed; see {log}")
            time.sleep(0.5)
        seconds = time.monotonic() - started
        per_worker = [
            Worker(int(scrape(port, CHUNKS_DONE)), high_water_mark(process.pid))
            for process, port in processes
        ]
    transcripts = asyncio.run(
        read_exactly(bootstrap, f"{prefix}media.transcript", published.chunks)
    )
    events = [json.loads(value) for _, _, value, _ in transcripts]
    words = sum(len(s["text"].split()) for e in events for s in e["segments"])
    spans = sum(e["end"] - e["start"] for e in events)
    return Result(workers, threads, seconds, per_worker, len(events), words, spans)


def wait_ready(processes: list[tuple[subprocess.Popen[bytes], int]], log: Path) -> None:
    """Every worker ready and in its group; then a few seconds for the group to settle, so
    that no worker starts alone on every partition."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(scrape(port, "streamscribe_ready") == 1 for _, port in processes):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _ in processes):
            raise RuntimeError(f"transcribe workers did not get ready; see {log}")
        time.sleep(0.5)
    time.sleep(10)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def run_round(bootstrap: str, published: Published, number: int) -> list[Result]:
    results = []
    for workers, threads in CONFIGS:
        print(f"round {number}: {workers} x {threads} thread(s) ...", file=sys.stderr, flush=True)
        results.append(measure(bootstrap, published, workers, threads))
    return results


def cpu_priority() -> dict[str, object]:
    """Recorded: the bench may run in a cpu cgroup weighted above the machine's other work
    (`cpu.shares`), which the figures depend on."""
    group = next(
        (line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
         if line.split(":")[1] == "cpu"), "/",
    )  # fmt: skip
    shares = Path(f"/sys/fs/cgroup/cpu{group}/cpu.shares")
    if group == "/" or not shares.exists():
        return {"cgroup": None, "shares": None}
    return {"cgroup": group, "shares": int(shares.read_text().strip())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30, help="length of the media")
    parser.add_argument(
        "--patience", type=float, default=600, help="Seconds to wait for a quiet machine."
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of all configs")
    args = parser.parse_args()
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    media = speech_of_minutes(args.minutes, OUT)
    given = " ".join(sys.argv[1:])  # as run: the equivalent make command
    command = f'make bench-scale SCALE_ARGS="{given}"' if given else "make bench-scale"
    settings = {"command": command, "minutes": args.minutes, "rounds": args.rounds,
                "patience": args.patience, "partitions": PARTITIONS, "configs": CONFIGS,
                "model": "tiny.en int8", "beam": 5, "environment": WORKER_MALLOC,
                "cpu": cpu_priority()}  # fmt: skip
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port, OUT / "logs" / "scale-tansu.log")
    asyncio.run(broker.start())
    try:
        bootstrap = f"127.0.0.1:{port}"
        published = publish(bootstrap, media, OUT / "scale-data")
        wait_for_quiet(patience=args.patience)
        run = results.started(settings)
        rounds = [run_round(bootstrap, published, n + 1) for n in range(args.rounds)]
    finally:
        asyncio.run(broker.stop())
    figures = {"media": published.summary(), "rounds": [[asdict(r) for r in rs] for rs in rounds]}
    results.finish("scale", run, figures)
    render.main()


if __name__ == "__main__":
    main()

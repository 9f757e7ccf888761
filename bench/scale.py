"""`make bench-scale` (`python -m bench.scale [--minutes 30]`): what a second transcribe worker
buys on one media. The media's chunks are published once (`streamscribe submit FILE`, keyed
`media_id:seq`, spread over the partitions of media.audio), then copied, partition for partition,
under a fresh topic prefix for each configuration: 1 worker x 1 thread, 2 workers x 1 thread,
1 worker x 2 threads. The workers start and join their group first; the wall time runs from the
copy to the last chunk transcribed. Per worker: chunks taken (its own counter) and peak RSS (the
kernel's high-water mark). The configurations alternate over `--rounds` (2); each keeps its
fastest. On a shared machine, run it in a cpu cgroup weighted above the rest (the report says so):
  mkdir /sys/fs/cgroup/cpu/bench; echo 16384 > /sys/fs/cgroup/cpu/bench/cpu.shares
  echo $$ > /sys/fs/cgroup/cpu/bench/cgroup.procs; make bench-scale
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.index import load_average, machine, wait_for_quiet
from bench.media import speech_of_minutes
from bench.peaks import high_water_mark
from bench.report import write_section
from bench.stack import CHUNKS_DONE, STREAMSCRIBE, free_port, scrape
from streamscribe.cli.broker import EmbeddedBroker
from streamscribe.cli.supervisor import WORKER_MALLOC

OUT = Path("bench/out")
SECTION = "## Scale-out: transcribe workers sharing one media"
PARTITIONS = 6
CONFIGS = ((1, 1), (2, 1), (1, 2))  # (workers, threads each)
TARGET = 1.5  # two 1-thread workers against one
READY_TIMEOUT = 300.0
MB = 1_000_000


@dataclass(frozen=True)
class Published:
    prefix: str
    media_id: str
    chunks: int
    partitions: dict[int, int]  # partition -> chunks of the media in it


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
    return Published(prefix, media_id, len(records), dict(sorted(partitions.items())))


Record = tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]


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


async def copy(bootstrap: str, source: str, target: str, expected: int) -> None:
    """Every record of `source` into the same partition of `target`, as fast as it goes."""
    records = await read_exactly(bootstrap, source, expected)
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
        source, target = f"{published.prefix}media.audio", f"{prefix}media.audio"
        asyncio.run(copy(bootstrap, source, target, published.chunks))
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
    return Result(workers, threads, seconds, per_worker)


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


def render(
    results: list[Result],
    published: Published,
    minutes: float,
    load: tuple[float, float],
    rounds: int,
) -> str:
    base = results[0].seconds
    rows = []
    for r in results:
        chunks = " / ".join(str(w.chunks) for w in r.per_worker)
        peaks = " / ".join(f"{w.peak_bytes / MB:.0f}" for w in r.per_worker)
        rows.append(
            f"| {r.workers} x {r.threads} thread{'s' if r.threads > 1 else ''} "
            f"| {r.seconds:.0f} s | {minutes * 60 / r.seconds:.1f}x | {base / r.seconds:.2f}x "
            f"| {chunks} | {peaks} |"
        )
    two = next(r for r in results if (r.workers, r.threads) == (2, 1))
    speedup = base / two.seconds
    shared = all(w.chunks > 0 for w in two.per_worker)
    spread = ", ".join(f"{p}: {n}" for p, n in published.partitions.items())
    command = "make bench-scale" + ("" if minutes == 30 else f' SCALE_ARGS="--minutes {minutes:g}"')
    return f"""{SECTION}

`{command}` on {machine()}; 1-minute load average {load[0]:.2f} before, {load[1]:.2f} after;
{cpu_priority()}. Each configuration's best of {rounds} alternating rounds.
One {minutes:g}-minute media of generated speech: {published.chunks} chunks in media.audio
({PARTITIONS} partitions; chunks per partition {spread}). Transcribe only (Whisper tiny.en int8,
beam 5), fresh worker processes per configuration, all in one consumer group.

| transcribe | wall time | real time | speed-up | chunks per worker | peak RSS per worker (MB) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- Two 1-thread workers against one: {speedup:.2f}x (target ≥ {TARGET}x) {ok(speedup >= TARGET)}
- Both workers took chunks of the same media: {ok(shared)}
"""


def run_round(bootstrap: str, published: Published, number: int) -> list[Result]:
    results = []
    for workers, threads in CONFIGS:
        print(f"round {number}: {workers} x {threads} thread(s) ...", file=sys.stderr, flush=True)
        results.append(measure(bootstrap, published, workers, threads))
    return results


def best(rounds: list[list[Result]]) -> list[Result]:
    """Per configuration, its fastest round: the configurations alternate, so a burst of other
    work on the machine slows one round of one configuration, not all rounds of it."""
    return [min(runs, key=lambda r: r.seconds) for runs in zip(*rounds, strict=True)]


def cpu_priority() -> str:
    """Said in the report: the bench may run in a cpu cgroup weighted above the machine's
    other work (`cpu.shares`), which the figures depend on."""
    group = next(
        (line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
         if line.split(":")[1] == "cpu"), "/",
    )  # fmt: skip
    shares = Path(f"/sys/fs/cgroup/cpu{group}/cpu.shares")
    if group == "/" or not shares.exists():
        return "no cpu weighting"
    return f"cpu cgroup `{group}` with cpu.shares {shares.read_text().strip()} (others: 1024)"


def ok(passed: bool) -> str:
    return "✅" if passed else "❌"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30, help="length of the media")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument(
        "--patience", type=float, default=600, help="Seconds to wait for a quiet machine."
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of all configs")
    args = parser.parse_args()
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    media = speech_of_minutes(args.minutes, OUT)
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port, OUT / "logs" / "scale-tansu.log")
    asyncio.run(broker.start())
    try:
        bootstrap = f"127.0.0.1:{port}"
        published = publish(bootstrap, media, OUT / "scale-data")
        wait_for_quiet(patience=args.patience)
        before = load_average()
        rounds = [run_round(bootstrap, published, n + 1) for n in range(args.rounds)]
        report = render(
            best(rounds), published, args.minutes, (before, load_average()), args.rounds
        )
    finally:
        asyncio.run(broker.stop())
    write_section(args.out, SECTION, report)
    print(report)


if __name__ == "__main__":
    main()

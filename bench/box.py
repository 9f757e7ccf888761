"""`make bench-box` (`python -m bench.box [--soak HOURS] [--minutes-long 180]`): the whole
pipeline as one process on one small box, under a 512 MiB memory cgroup; writes
docs/bench/box.json and re-renders docs/benchmarks.md.

1. The box: a memory cgroup `streamscribe-box-<pid>` limited to 512 MiB (swap included), and
   `streamscribe up --single-process` started inside it, on ports, a data dir and an embedded
   broker of its own. A `--minutes-long` speech file by URL (served on loopback) and a
   `--minutes-file` local file (`submit FILE --wait`, run outside the cgroup: the CLI is a
   client, its own peak and its decoder child's are reported apart) go in at the same time.
   Every 0.5 s: the cgroup's usage, anon (`total_rss`) and page cache, and each process's RSS.
2. The multi-process stack (`up`, not in a cgroup) on the same two inputs, for comparison.
3. The broker under steady load: a fresh `up --single-process` on its default recycle and drain
   marks; `--broker-gb` of 100 KB messages published without pause to a scratch topic nobody
   consumes while 1-minute media go through the pipeline one after another (never idle), so
   the broker is bounded only by the drain path (past the drain mark new media wait, the work
   in flight finishes, the broker restarts empty); its RSS sampled all along.
4. `--soak HOURS` (0: skipped): 10-minute media one after another through the box until HOURS of
   them have passed; the worker's RSS after the first hour (or half, if shorter) and at the end.

The cgroup is created under this process's own memory cgroup (v1) or at the root (v2) and
removed at the end, whatever happens; every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import itertools
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from bench import render, results
from bench.media import speech_of_minutes
from bench.peaks import Measured, high_water_mark, run_measured
from bench.stack import STREAMSCRIBE, MediaServer, Stack

MiB = 2**20
MB = 1_000_000
OUT = Path("bench/out")
LIMIT = 512 * MiB
ANON_TARGET = 480 * MiB
SAMPLE_SECONDS = 0.5
CGROUP_ROOT = Path("/sys/fs/cgroup")
SCRATCH_TOPIC = "bench.box.scratch"  # (after the topic prefix) nothing consumes it
MESSAGE_BYTES = 100_000  # about one media.audio message
PIECE_BYTES = 10 * MB  # what the scratch publisher sends per connection
STEADY_MINUTES = 1.0  # the short media that keep the pipeline busy meanwhile
SOAK_MINUTES = 10.0
RECYCLED = "broker: recycled"
STOPPING = "stopping"  # samples while the pipeline stops: kept in the CSV, not in the report
T = TypeVar("T")


# -- the cgroup ----------------------------------------------------------------------------------


class Cgroup:
    """A memory cgroup of our own (v1, or v2 when /sys/fs/cgroup/cgroup.controllers exists)."""

    def __init__(self, name: str, limit: int, root: Path = CGROUP_ROOT) -> None:
        self.v2 = (root / "cgroup.controllers").exists()
        self.root = root
        self.limit = limit
        self.parent = self._parent()
        self.path = self.parent / name

    def _parent(self) -> Path:
        """v1: inside our own memory cgroup when we may create one there (the processes stay
        under whatever accounts for this session), else the hierarchy's root. v2: the root
        (a cgroup with processes cannot enable controllers for children)."""
        if self.v2:
            return self.root
        base = self.root / "memory"
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    own = base / path.strip("/")
                    if os.access(own, os.W_OK):
                        return own
        return base

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def _keyed(self, name: str) -> dict[str, int]:
        pairs = (line.split() for line in self._read(name).splitlines())
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}

    def create(self) -> None:
        if self.v2:
            with contextlib.suppress(OSError):  # often enabled already
                (self.root / "cgroup.subtree_control").write_text("+memory")
        self.path.mkdir()
        if self.v2:
            self._write("memory.max", str(self.limit))
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", "0")
        else:
            self._write("memory.limit_in_bytes", str(self.limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap must not hide it
                self._write("memory.memsw.limit_in_bytes", str(self.limit))
        limit_file = "memory.max" if self.v2 else "memory.limit_in_bytes"
        if int(self._read(limit_file)) != self.limit:
            raise RuntimeError(f"{self.path}: the limit did not take")

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def enter_prefix(self) -> list[str]:
        """A command prefix that moves the shell into the cgroup, then execs the rest."""
        return ["sh", "-c", f'echo $$ > {self.procs} && exec "$@"', "sh"]

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in self._read("cgroup.procs").split()]
        except OSError:
            return []

    def memory(self) -> tuple[int, int, int]:
        """(usage, anon, page cache) in bytes."""
        stat = self._keyed("memory.stat")
        if self.v2:
            return int(self._read("memory.current")), stat["anon"], stat["file"]
        return int(self._read("memory.usage_in_bytes")), stat["total_rss"], stat["total_cache"]

    def max_usage(self) -> int | None:
        """The kernel's own high-water mark of usage (v2 needs Linux 5.19 for memory.peak)."""
        with contextlib.suppress(OSError):
            return int(self._read("memory.peak" if self.v2 else "memory.max_usage_in_bytes"))
        return None

    def oom_kills(self) -> int:
        if self.v2:
            return self._keyed("memory.events").get("oom_kill", 0)
        return self._keyed("memory.oom_control").get("oom_kill", 0)

    def failcnt(self) -> int:
        """v1: times usage hit the limit; v2: the `max` count of memory.events."""
        if self.v2:
            return self._keyed("memory.events").get("max", 0)
        return int(self._read("memory.failcnt"))

    def remove(self) -> None:
        """Kill what still runs in it, move out what will not die, remove the directory."""
        if not self.path.exists():
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for pid in self.pids():
            with contextlib.suppress(OSError):
                (self.parent / "cgroup.procs").write_text(str(pid))
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.2)
        print(f"warning: could not remove {self.path}", file=sys.stderr)


# -- sampling ------------------------------------------------------------------------------------


def label_of(cmdline: list[str]) -> str:
    """What a process of the pipeline is, from its command line."""
    joined = " ".join(cmdline)
    if cmdline and "tansu" in Path(cmdline[0]).name:
        return "broker"
    if "decode_child" in joined or "ingest.decoder" in joined:
        return "decoder"
    if "worker" in cmdline:
        rest = cmdline[cmdline.index("worker") + 1 :]
        return f"worker {rest[0]}" if rest else "worker"
    if "up" in cmdline:
        return "up"
    if "submit" in cmdline:
        return "submit"
    if "-m" in cmdline[:-1]:  # another python -m child, e.g. the int8 copy at first start
        return cmdline[cmdline.index("-m") + 1].rsplit(".", 1)[-1]
    return Path(cmdline[0]).name if cmdline else "?"


def _proc(pid: int) -> tuple[str, int, int] | None:
    """(label, RSS, high-water mark) of a live process; None when gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    if "VmRSS" not in fields:
        return None
    cmdline = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return label_of(cmdline), fields["VmRSS"], fields.get("VmHWM", fields["VmRSS"])


@dataclass
class Sample:
    at: float
    usage: int
    anon: int
    cache: int
    rss: dict[str, int]  # summed per label


class Sampler:
    """Samples every `SAMPLE_SECONDS` in a thread: the cgroup's memory (if any) and each
    process's RSS; keeps each label's highest high-water mark (the peak of one process)."""

    def __init__(self, pids: Callable[[], Iterable[int]], cgroup: Cgroup | None = None) -> None:
        self.pids = pids
        self.cgroup = cgroup
        self.samples: list[Sample] = []
        self.peaks: dict[str, int] = {}
        self.seen: dict[str, set[int]] = {}
        self.processes: dict[int, psutil.Process] = {}  # everything seen, to stop at the end
        self.phases: list[tuple[str, float]] = []  # (name, seconds in) of each phase's start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a failed sample must not end the sampling
                print(f"sampler: {exc!r}", file=sys.stderr)
            self._stop.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        rss: dict[str, int] = {}
        for pid in self.pids():
            found = _proc(pid)
            if found is None:
                continue
            label, now, peak = found
            rss[label] = rss.get(label, 0) + now
            self.peaks[label] = max(self.peaks.get(label, 0), peak)
            self.seen.setdefault(label, set()).add(pid)
            if pid not in self.processes:
                with contextlib.suppress(psutil.Error):
                    self.processes[pid] = psutil.Process(pid)
        usage, anon, cache = self.cgroup.memory() if self.cgroup else (0, 0, 0)
        at = time.monotonic() - self._started
        self.samples.append(Sample(at, usage, anon, cache, rss))

    def phase(self, name: str) -> None:
        self.phases.append((name, time.monotonic() - self._started))

    def in_phases(self) -> list[tuple[str, list[Sample]]]:
        """The samples of each phase, in order."""
        bounds = [*self.phases, ("", float("inf"))]
        return [
            (name, [s for s in self.samples if start <= s.at < end])
            for (name, start), (_, end) in itertools.pairwise(bounds)
        ]

    def peak_of(self, attribute: str) -> Sample | None:
        return max(self.samples, key=lambda s: int(getattr(s, attribute)), default=None)

    def peak_sum(self) -> int:
        return max((sum(s.rss.values()) for s in self.samples), default=0)

    def write_csv(self, path: Path) -> None:
        labels = sorted({label for s in self.samples for label in s.rss})
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["seconds", "usage", "anon", "cache", *labels])
            for s in self.samples:
                row = [f"{s.at:.1f}", s.usage, s.anon, s.cache]
                writer.writerow(row + [s.rss.get(label, 0) for label in labels])


def tree(stack: Stack) -> Callable[[], list[int]]:
    """The pids of the stack's `up` and all its descendants, as they are at each call."""

    def pids() -> list[int]:
        if stack.process is None:
            return []
        try:
            root = psutil.Process(stack.process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []

    return pids


def stop_left(processes: Iterable[psutil.Process], grace: float = 15) -> None:
    """After `up` was asked to stop and has exited: kill what of `processes` still runs after
    `grace` (psutil refuses a pid that was reused by another process)."""
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(psutil.Error):
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            if process.is_running():
                process.kill()


# -- media through a pipeline --------------------------------------------------------------------


@dataclass
class MediaRun:
    name: str
    minutes: float
    media_id: str = ""
    state: str = "not submitted"
    seconds: float | None = None
    failure: str = ""

    @property
    def speed(self) -> float | None:
        return self.minutes * 60 / self.seconds if self.seconds else None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def wait_done(stack: Stack, run: MediaRun, submitted: float, deadline: float, poll: float) -> None:
    """Poll the ledger (`status --json`) until the media is indexed or failed, or `deadline`."""
    while True:
        status = stack.status(run.media_id)
        run.state = str(status.get("state", "unknown"))
        if run.state in ("indexed", "failed"):
            break
        if time.monotonic() > deadline:
            run.state = f"{run.state} (timed out)"
            return
        time.sleep(poll)
    if run.state == "failed":
        run.failure = str(status.get("failure"))
    indexed = _epoch(status.get("indexed_at"))
    run.seconds = (indexed or time.time()) - submitted


def submit_url(stack: Stack, url: str, run: MediaRun) -> float:
    submitted = time.time()
    result = stack.cli("submit", url, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"submit {url} failed: {result.stderr[-2000:]}")
    run.media_id = result.stdout.strip().splitlines()[-1]
    run.state = "requested"
    return submitted


@dataclass
class Inputs:
    long: MediaRun
    file: MediaRun
    submit: Measured | None = None  # `submit FILE --wait`, its own peak exact (VmHWM)
    decoder: int = 0  # the peak of its decoder child


def _submit_tree() -> list[int]:
    """The `submit FILE --wait` this process started, and its children (the decoder)."""
    pids: list[int] = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            command = child.cmdline()
            if "submit" in command and "--wait" in command:
                pids += [child.pid, *(c.pid for c in child.children(recursive=True))]
    return pids


def run_inputs(stack: Stack, server: MediaServer, long: Path, local: Path, logs: Path) -> Inputs:
    """The long media by URL and the local file (`submit FILE --wait`) at the same time."""
    minutes_long, minutes_file = _minutes(long), _minutes(local)
    inputs = Inputs(
        MediaRun(f"{minutes_long:g}-min by URL", minutes_long),
        MediaRun(f"{minutes_file:g}-min local file", minutes_file),
    )
    timeout = max(1800.0, (minutes_long + minutes_file) * 60 / 2)  # at 2x real time
    deadline = time.monotonic() + timeout
    submitted = submit_url(stack, server.url(long), inputs.long)
    print(f"  submitted {inputs.long.name}: {inputs.long.media_id}", flush=True)
    # stderr (the progress bar) to a file; `exec` keeps the CLI the process that is measured
    command = ["sh", "-c", 'exec "$@" 2>>"$0"', str(logs / "submit-file.err"), STREAMSCRIBE,
               "submit", str(local), "--wait", "--timeout", str(timeout)]  # fmt: skip

    def submit_file() -> None:
        inputs.submit = run_measured(command, env=stack.env)

    thread = threading.Thread(target=submit_file, daemon=True)
    with Sampler(_submit_tree) as watch:
        thread.start()
        wait_done(stack, inputs.long, submitted, deadline, poll=10)
        thread.join(max(0.0, deadline - time.monotonic()) + 60)
    measured = inputs.submit
    if measured is None:
        inputs.file.state = "timed out"
        return inputs
    # the rusage of wait4 is the larger of the CLI and its child: the child's own when larger
    larger = measured.tree_peak_bytes if measured.tree_peak_bytes > measured.peak_bytes else 0
    inputs.decoder = max(watch.peaks.get("decoder", 0), larger)
    lines = measured.stdout.strip().splitlines()
    inputs.file.media_id = lines[-1] if lines else ""
    status = stack.status(inputs.file.media_id) if inputs.file.media_id else {}
    inputs.file.state = str(status.get("state", f"exit {measured.returncode}"))
    inputs.file.failure = str(status.get("failure") or "")
    inputs.file.seconds = measured.seconds
    return inputs


def _minutes(path: Path) -> float:
    return float(path.stem.removeprefix("speech-").removesuffix("min"))


def events(stack: Stack) -> tuple[list[str], dict[str, int], list[str]]:
    """up's status lines after it was first ready, counts of what the workers logged, and the
    memory guard's decisions (time, what, the figure it acted on)."""
    ready = next((i for i, line in enumerate(stack.lines) if "streamscribe ready" in line), 0)
    later = stack.lines[ready + 1 :]
    patterns = {
        "guard paused": "pausing consumption",
        "guard resumed": "resuming consumption",
        "worker exit 75 (recycle)": "for a restart",
        "tracebacks": "Traceback",
    }
    log = stack.data / "up.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    guard = []
    for line in text.splitlines():
        words = line.split()
        if "consumption" in line and "RSS" in words:
            what = "paused" if "pausing" in line else "resumed"
            figure = int(words[words.index("RSS") + 1])
            guard.append(f"{words[1][:8]} {what} at {figure / MiB:.0f} MiB")
        elif "for a restart" in line:
            guard.append(f"{words[1][:8]} worker exit 75")
    return later, {name: text.count(pattern) for name, pattern in patterns.items()}, guard


# -- 1. the box ----------------------------------------------------------------------------------


@dataclass
class Box:
    inputs: Inputs
    sampler: Sampler
    max_usage: int | None
    oom_before: int
    oom_after: int
    failcnt: int
    cgroup_path: str
    cgroup_version: str
    up_lines: list[str]
    counts: dict[str, int]
    guard: list[str]
    soak: Soak | None = None


@dataclass
class Soak:
    hours: float
    media: int = 0
    failed: int = 0
    marks: list[tuple[float, int, int]] = field(default_factory=list)  # (hours, worker, broker)


def onnx_model() -> Path:
    """The embed model's int8 ONNX export, made once outside any cgroup and shared by every
    pipeline here. A worker exports it at its first start when missing, in a child process that
    loads torch: far more than 512 MiB (inside the box it was OOM-killed)."""
    from streamscribe.embed.embedder import onnx_dir, resolve_model
    from streamscribe.embed.onnx_export import ensure_exported
    from streamscribe.embed.settings import EmbedSection

    section = EmbedSection()
    directory = onnx_dir(section, OUT.resolve())
    ensure_exported(resolve_model(section), directory)
    return directory


def settings(hosts: str = '["127.0.0.1"]') -> dict[str, str]:
    """What every pipeline here gets: loopback media allowed by name, long media allowed, the
    shared ONNX export."""
    return {
        "STREAMSCRIBE_LOG_LEVEL": "INFO",  # the memory guard logs its resumes at INFO
        "STREAMSCRIBE_EMBED__ONNX_DIR": str(onnx_model()),
        "STREAMSCRIBE_INGEST__ALLOW_PRIVATE_NETWORKS": "false",
        "STREAMSCRIBE_INGEST__ALLOWED_HOSTS": hosts,
        "STREAMSCRIBE_INGEST__MAX_DURATION_SECONDS": str(6 * 3600),
        "STREAMSCRIBE_INGEST__MAX_DOWNLOAD_BYTES": str(4 * 10**9),
    }


def measure_box(server: MediaServer, long: Path, local: Path, soak_hours: float, logs: Path) -> Box:
    cgroup = Cgroup(f"streamscribe-box-{os.getpid()}", LIMIT)
    cgroup.create()
    print(f"box: cgroup {cgroup.path} ({'v2' if cgroup.v2 else 'v1'}), limit 512 MiB", flush=True)
    try:
        oom_before = cgroup.oom_kills()
        stack = Stack(OUT, up_args=["--single-process"], prefix=cgroup.enter_prefix(), **settings())
        with Sampler(cgroup.pids, cgroup) as sampler, stack:
            print(f"box: ready ({stack.data})", flush=True)
            sampler.phase("both media in flight")
            inputs = run_inputs(stack, server, long, local, logs)
            sampler.phase("soak" if soak_hours > 0 else "idle")
            print(f"box: {inputs.long.name} {inputs.long.state}, "
                  f"{inputs.file.name} {inputs.file.state}", flush=True)  # fmt: skip
            soak = run_soak(stack, server, soak_hours) if soak_hours > 0 else None
            time.sleep(2 * SAMPLE_SECONDS)
            sampler.phase(STOPPING)
        up_lines, counts, guard = events(stack)
        sampler.write_csv(logs / "box-samples.csv")
        return Box(
            inputs, sampler, cgroup.max_usage(), oom_before, cgroup.oom_kills(),
            cgroup.failcnt(), str(cgroup.path), "v2" if cgroup.v2 else "v1", up_lines, counts,
            guard, soak,
        )  # fmt: skip
    finally:
        cgroup.remove()


def _live(stack: Stack, label: str) -> int:
    """The current RSS of the one live process of `label` under up (0 if none)."""
    for pid in tree(stack)():
        found = _proc(pid)
        if found and found[0] == label:
            return found[1]
    return 0


def run_soak(stack: Stack, server: MediaServer, hours: float) -> Soak:
    """10-minute media one after another (different URLs by query string) until `hours` of
    them have passed; the worker's RSS after the first hour (half the soak, if shorter) and at
    the end."""
    media = speech_of_minutes(SOAK_MINUTES, OUT)
    soak = Soak(hours)
    first = min(1.0, hours / 2)
    done = 0.0
    while done < hours:
        run = MediaRun(f"soak {soak.media}", SOAK_MINUTES)
        submitted = submit_url(stack, f"{server.url(media)}?soak={soak.media}", run)
        wait_done(stack, run, submitted, time.monotonic() + 1800, poll=2)
        soak.media += 1
        soak.failed += run.state != "indexed"
        done += SOAK_MINUTES / 60
        worker, broker = _live(stack, "worker all"), _live(stack, "broker")
        print(f"  soak: {done:.2f} h, {run.state}, worker {worker / MiB:.0f} MiB, "
              f"broker {broker / MiB:.0f} MiB", flush=True)  # fmt: skip
        if (not soak.marks and done >= first) or done >= hours:
            soak.marks.append((done, worker, broker))
    return soak


# -- 2. the multi-process stack ------------------------------------------------------------------


@dataclass
class Multi:
    inputs: Inputs
    sampler: Sampler
    up_lines: list[str]
    counts: dict[str, int]
    guard: list[str]


def measure_stack(server: MediaServer, long: Path, local: Path, logs: Path) -> Multi:
    stack = Stack(OUT, **settings())
    sampler = Sampler(tree(stack))
    try:
        with sampler, stack:
            print(f"stack: ready ({stack.data})", flush=True)
            inputs = run_inputs(stack, server, long, local, logs)
            time.sleep(2 * SAMPLE_SECONDS)
            for name, process in stack.workers().items():  # exact, for the live workers
                label = f"worker {name}"
                sampler.peaks[label] = max(sampler.peaks.get(label, 0),
                                           high_water_mark(process.pid))  # fmt: skip
    finally:
        stop_left(sampler.processes.values())
    up_lines, counts, guard = events(stack)
    sampler.write_csv(logs / "stack-samples.csv")
    return Multi(inputs, sampler, up_lines, counts, guard)


# -- 3. the broker under steady load ------------------------------------------------------------


@dataclass
class Bounded:
    """The broker under a steady load: short media through the pipeline one after another (so
    it is never idle) while 100 KB messages go to a scratch topic continuously; past the drain
    mark `up` drains the pipeline and recycles the broker."""

    planned: int  # bytes to the scratch topic
    published: int = 0
    send_errors: int = 0  # pieces refused while the broker restarted (retried)
    media: int = 0
    not_indexed: int = 0
    baseline: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, broker RSS)
    recycles: int = 0
    drains: int = 0
    pids: int = 0
    error: str = ""
    up_lines: list[str] = field(default_factory=list)


async def publish(bootstrap: str, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():  # gone after each recycle
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=MESSAGE_BYTES + 64 * 1024
    )
    await producer.start()
    try:
        payload = os.urandom(MESSAGE_BYTES)  # incompressible
        pending = []
        for i in range(total // MESSAGE_BYTES):
            pending.append(await producer.send(topic, payload, key=str(i).encode()))
            if len(pending) >= 100:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _broker(stack: Stack) -> tuple[int, int]:
    """(pid, RSS) of the embedded broker: the child of up running tansu (a new pid after
    each recycle)."""
    assert stack.process is not None
    for child in psutil.Process(stack.process.pid).children():
        with contextlib.suppress(psutil.Error):
            if "tansu" in " ".join(child.cmdline()):
                return child.pid, int(child.memory_info().rss)
    return 0, 0


def _recycles(stack: Stack) -> int:
    return sum(RECYCLED in line for line in stack.lines)


def measure_broker(server: MediaServer, total: int) -> Bounded:
    stack = Stack(OUT, up_args=["--single-process"], **settings())
    sampler = Sampler(tree(stack))
    bounded = Bounded(total)
    try:
        with sampler, stack:
            print(f"broker: ready ({stack.data})", flush=True)
            bounded.baseline = _broker(stack)[1]
            _steady(stack, server, bounded)
    finally:
        stop_left(sampler.processes.values())
    bounded.recycles = _recycles(stack)
    bounded.drains = sum("broker: draining" in line for line in stack.lines)
    bounded.pids = len(sampler.seen.get("broker", ()))
    bounded.rss = [(x.at, x.rss.get("broker", 0)) for x in sampler.samples]
    bounded.up_lines = events(stack)[0]
    return bounded


def _steady(stack: Stack, server: MediaServer, bounded: Bounded) -> None:
    """Publish to the scratch topic from a thread, without pause, while short media go through
    the pipeline one after another, until `planned` bytes are published. A piece refused while
    the broker restarts is sent again; up exiting ends the run, reported."""
    bootstrap = stack.env["STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS"]
    topic = stack.env.get("STREAMSCRIBE_TOPICS__PREFIX", "") + SCRATCH_TOPIC
    done = threading.Event()

    def publisher() -> None:
        while bounded.published < bounded.planned and not done.is_set():
            try:
                asyncio.run(asyncio.wait_for(publish(bootstrap, topic, PIECE_BYTES), 300))
                bounded.published += PIECE_BYTES
            except Exception:
                bounded.send_errors += 1
                time.sleep(1)
        done.set()

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    media = speech_of_minutes(STEADY_MINUTES, OUT)
    try:
        while not done.is_set():
            assert stack.process is not None
            if stack.process.poll() is not None:
                bounded.error = f"up exited with {stack.process.returncode}"
                return
            run = MediaRun(f"steady {bounded.media}", STEADY_MINUTES)
            submitted = submit_url(stack, f"{server.url(media)}?steady={bounded.media}", run)
            wait_done(stack, run, submitted, time.monotonic() + 900, poll=2)
            bounded.media += 1
            bounded.not_indexed += run.state != "indexed"
            rss = _broker(stack)[1]
            print(f"  broker: {bounded.published / MB:.0f} MB published, broker "
                  f"{rss / MiB:.0f} MiB, {_recycles(stack)} recycles", flush=True)  # fmt: skip
    finally:
        done.set()
        thread.join(330)


# -- the results ---------------------------------------------------------------------------------


class Load:
    """The host's 1-minute load average every 15 s while the benchmark runs."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.values.append(os.getloadavg()[0])
            self._stop.wait(15)


def _sampled(sampler: Sampler) -> dict[str, Any]:
    """What the report needs of a sampler's samples (all of them go to the CSV)."""
    anon = sampler.peak_of("anon")
    phases = []
    for name, samples in sampler.in_phases():
        if not samples or name == STOPPING:
            continue
        anons = sorted(x.anon for x in samples)
        workers = sorted(x.rss.get("worker all", 0) for x in samples)
        phases.append({
            "name": name, "from_seconds": samples[0].at,
            "anon_median": anons[len(anons) // 2], "anon_peak": anons[-1],
            "worker_median": workers[len(workers) // 2], "worker_peak": workers[-1],
            "broker_at_end": samples[-1].rss.get("broker"),
        })  # fmt: skip
    return {
        "peaks": sampler.peaks,
        "seen": {label: len(pids) for label, pids in sorted(sampler.seen.items())},
        "peak_sum": sampler.peak_sum(),
        "anon_peak": {"at": anon.at, "anon": anon.anon, "rss": anon.rss} if anon else None,
        "usage_peak": max((x.usage for x in sampler.samples), default=0),
        "cache_peak": max((x.cache for x in sampler.samples), default=0),
        "phases": phases,
    }


def _inputs(inputs: Inputs) -> dict[str, Any]:
    return {
        "long": asdict(inputs.long),
        "file": asdict(inputs.file),
        "submit_peak": inputs.submit.peak_bytes if inputs.submit else None,
        "decoder_peak": inputs.decoder if inputs.submit else None,
    }


def figures(box: Box, multi: Multi | None, bounded: Bounded | None, load: Load) -> dict[str, Any]:
    return {
        "load_during": load.values,
        "box": {
            "inputs": _inputs(box.inputs), "sampled": _sampled(box.sampler),
            "max_usage": box.max_usage, "oom_before": box.oom_before, "oom_after": box.oom_after,
            "failcnt": box.failcnt, "cgroup_version": box.cgroup_version,
            "up_lines": box.up_lines, "counts": box.counts, "guard": box.guard,
            "soak": asdict(box.soak) if box.soak else None,
        },
        "stack": None if multi is None else {
            "inputs": _inputs(multi.inputs), "sampled": _sampled(multi.sampler),
            "up_lines": multi.up_lines, "counts": multi.counts,
        },
        "broker": asdict(bounded) if bounded else None,
    }  # fmt: skip


@contextlib.contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the cgroup is removed and processes stopped."""

    def handler(*_: Any) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes-long", type=float, default=180, help="the media by URL")
    parser.add_argument("--minutes-file", type=float, default=60, help="the local file")
    parser.add_argument("--soak", type=float, default=0, help="hours of soak media (0: none)")
    parser.add_argument("--broker-gb", type=float, default=1, help="through the broker, GB")
    parser.add_argument("--no-stack", action="store_true", help="skip the multi-process stack")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.box creates a memory cgroup: run it as root")
    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / f"box-run-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir()
    given = " ".join(sys.argv[1:])
    command = f'make bench-box BOX_ARGS="{given}"' if given else "make bench-box"
    long = speech_of_minutes(args.minutes_long, OUT)
    local = speech_of_minutes(args.minutes_file, OUT)
    failures: list[str] = []

    def attempt(name: str, measure: Callable[[], T]) -> T | None:
        """A later phase that fails is reported; the phases before it still are."""
        try:
            return measure()
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {exc!r}")
            return None

    given_settings = {**vars(args), "command": command, "limit_bytes": LIMIT,
                      "kernel": platform.release(), "sample_seconds": SAMPLE_SECONDS,
                      "logs": str(logs), "message_bytes": MESSAGE_BYTES,
                      "steady_minutes": STEADY_MINUTES}  # fmt: skip
    run = results.started(given_settings)
    with _terminated_as_exit(), Load() as load:
        try:
            with MediaServer(OUT) as server:
                box = measure_box(server, long, local, args.soak, logs)
                multi = None
                if not args.no_stack:
                    multi = attempt("stack", lambda: measure_stack(server, long, local, logs))
                total = int(args.broker_gb * 1000 * MB)
                steady = functools.partial(measure_broker, server, total)
                bounded = attempt("broker", steady) if total else None
        finally:
            stop_left(psutil.Process().children(recursive=True), grace=5)
    results.finish("box", run, {**figures(box, multi, bounded, load), "failures": failures})
    render.main()


if __name__ == "__main__":
    main()

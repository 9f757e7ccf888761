"""The memory guard: every service knows its ceiling, measures its RSS, pauses consumption when
close to the ceiling, and recycles itself when it stays above (design decision 6).

Pausing uses aiokafka's `pause`/`resume` on the consumer of every subscriber: the consumer keeps
heartbeating and its assignment, so nothing rebalances; records it had fetched for a paused
partition are dropped and fetched again from the same position on resume, and offsets are
committed only after a message is handled, so nothing is lost or repeated.

Recycling exits with `EXIT_RECYCLE` right after a message's offset was committed, so the message
that pushed RSS over is not delivered again; the supervisor (`streamscribe up`, Kubernetes)
starts a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaBroker

from streamscribe.common import metrics
from streamscribe.common.errors import ConfigError
from streamscribe.common.settings import MemorySettings

log = logging.getLogger(__name__)

EXIT_RECYCLE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run me again
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as 2**63-1 rounded down to a page
_POSITION_TIMEOUT = 0.1  # seconds; lag must not hold up the pause decision of the next sample

T = TypeVar("T")


@dataclass(frozen=True)
class Marks:
    """The RSS levels the guard acts on, in bytes; all None when there is no ceiling."""

    ceiling: int | None = None
    pause: int | None = None
    resume: int | None = None
    shared: bool = False
    """The ceiling is a cgroup's limit: compare the whole cgroup's memory with it."""


def cgroup_dirs(root: Path = CGROUP_ROOT, own: Path | None = None) -> list[Path]:
    """This process's memory cgroup directories to look in, v2 first: its own cgroup's (from
    /proc/self/cgroup; a host process in `/sys/fs/cgroup/memory/box` must read that limit, not
    the root's), then the root's (a container with its own cgroup namespace sees "/")."""
    v2, v1 = "", ""
    with contextlib.suppress(OSError):
        for line in (own or PROC_CGROUP).read_text().splitlines():
            number, controllers, path = [*line.split(":", 2), "", ""][:3]
            if number == "0" and controllers == "":
                v2 = path.strip("/")
            elif "memory" in controllers.split(","):
                v1 = path.strip("/")
    dirs = [root / v2, root / "memory" / v1, root, root / "memory"]
    return list(dict.fromkeys(dirs))


def read_cgroup_limit(root: Path = CGROUP_ROOT) -> int | None:
    """The memory limit of this process's cgroup (v2, else v1); None when it sets none."""
    for directory in cgroup_dirs(root):
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                text = (directory / name).read_text().strip()
            except OSError:
                continue
            if not text.isdigit():  # v2 writes "max" for no limit
                return None
            limit = int(text)
            return limit if limit < _UNLIMITED else None
    return None


def read_cgroup_usage(root: Path = CGROUP_ROOT) -> int | None:
    """Memory the cgroup's processes hold and the kernel cannot reclaim (anonymous memory: v2
    `anon`, v1 `total_rss`), for every process in it; the page cache is left out, since the
    kernel drops it under the limit rather than kill."""
    for directory in cgroup_dirs(root):
        try:
            lines = (directory / "memory.stat").read_text().splitlines()
        except OSError:
            continue
        stats = dict(line.split(" ", 1) for line in lines if " " in line)
        for key in ("anon", "total_rss"):
            if key in stats and stats[key].strip().isdigit():
                return int(stats[key])
    return None


def resolve_marks(settings: MemorySettings, cgroup_root: Path = CGROUP_ROOT) -> Marks:
    """The ceiling in force and its pause and resume marks. The ceiling is the setting or the
    cgroup limit, the lower of the two when both exist: above the cgroup's, the kernel's OOM
    killer would act before the guard. A cgroup's limit is shared by every process in it (the
    broker, `up`, a decoder child): `shared` says to measure them all, not this one alone."""
    cgroup = read_cgroup_limit(cgroup_root)
    limits = [n for n in (settings.ceiling_bytes, cgroup) if n]
    if not limits:
        return Marks()
    ceiling = min(limits)
    pause, resume = settings.pause_fraction, settings.resume_fraction
    shared = cgroup is not None and ceiling == cgroup
    return Marks(ceiling, int(ceiling * pause), int(ceiling * resume), shared)


def rss() -> int:
    """Resident set size of this process, in bytes."""
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """The highest RSS of this process so far, in bytes, as the kernel tracked it."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss())


def admitted(limit: int | None, baseline: int, unit: int, configured: int, least: int = 1) -> int:
    """How many inputs of `unit` bytes each fit between `baseline` RSS and `limit`, at most
    `configured` (all of it without a limit). Fewer than `least` is a ConfigError: a worker
    that admits nothing must fail at start, not refuse every message."""
    if limit is None:
        return configured
    fits = (limit - baseline) // unit
    if fits < least:
        raise ConfigError(
            f"the memory budget of {limit} bytes leaves room for {max(fits, 0)} inputs of "
            f"{unit} bytes above the {baseline} bytes in use, {least} needed: raise "
            "STREAMSCRIBE_MEMORY__CEILING_BYTES (or the container's memory limit)"
        )
    return min(configured, fits)


async def load_model(load: Callable[[], T]) -> T:
    """Run the blocking `load` off the event loop; add the RSS it added to the models' size (a
    process may load several: one box; a model shared by two services counts once)."""
    before = rss()
    model = await asyncio.to_thread(load)
    metrics.MODEL_LOAD_BYTES.inc(max(0, rss() - before))
    return model


def recycle_if_over(limit: int | None, why: str) -> None:
    """Exit for a restart when RSS is above `limit`, even after freed memory is given back."""
    if limit is None or rss() <= limit:
        return
    _release_free_memory()
    if (now := rss()) > limit:
        _exit_for_restart(f"{why}: RSS {now} bytes is above {limit}")


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS shows what is really held."""
    gc.collect()
    if libc := ctypes.util.find_library("c"):
        with contextlib.suppress(OSError, AttributeError):  # malloc_trim is glibc's
            ctypes.CDLL(libc).malloc_trim(0)


def _exit_for_restart(reason: str) -> NoReturn:
    # os._exit, not SystemExit: a handler task must not be able to swallow it, and a graceful
    # stop would wait for in-flight work while over budget. Everything handled is committed;
    # temp dirs of dead processes are swept at the next start.
    log.error("%s; exiting with %d for a restart", reason, EXIT_RECYCLE)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_RECYCLE)


class MemoryGuard:
    """A background task that samples RSS and consumer lag, and pauses every consumer of
    `broker` from the pause mark until RSS is below the resume mark."""

    def __init__(self, broker: KafkaBroker, settings: MemorySettings, marks: Marks) -> None:
        self.broker = broker
        self.settings = settings
        self.marks = marks
        self.paused = False
        self._paused_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        metrics.MEMORY_CEILING.set(self.marks.ceiling or 0)  # 0: no ceiling
        metrics.PEAK_RSS.set_function(peak_rss)  # read at scrape time: no peak is missed
        self._task = asyncio.create_task(self._run(), name="memory-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a failed sample must not end the guard
                log.exception("memory guard: sampling failed")
            await asyncio.sleep(self.settings.sample_seconds)

    async def sample(self) -> None:
        self._decide(self._used())
        consumers = self._consumers()
        for consumer in consumers:
            self._apply(consumer)
        await _report_lag(consumers)

    def _used(self) -> int:
        """This process's RSS, or the whole cgroup's when the ceiling is its limit: the OOM
        killer counts every process in it, so the guard does too."""
        own = rss()
        if not self.marks.shared:
            return own
        return max(own, read_cgroup_usage() or 0)

    def _decide(self, now: int) -> None:
        pause, resume = self.marks.pause, self.marks.resume
        if pause is None or resume is None:
            return
        if not self.paused and now >= pause:
            log.warning("RSS %d bytes reached the pause mark %d: pausing consumption", now, pause)
            self.paused, self._paused_at = True, time.monotonic()
            metrics.MEMORY_PAUSED.set(1)
        elif self.paused and now < resume:
            log.info("RSS %d bytes is below the resume mark %d: resuming consumption", now, resume)
            self.paused = False
            metrics.MEMORY_PAUSED.set(0)
        elif self.paused and time.monotonic() - self._paused_at > self.settings.max_pause_seconds:
            recycle_if_over(resume, f"paused for over {self.settings.max_pause_seconds:.0f}s")

    def _apply(self, consumer: Any) -> None:
        """Bring one consumer in line with `paused` (nothing else pauses partitions). Run on
        every sample, so partitions a rebalance assigns while paused (they come back unpaused)
        are paused within one sample."""
        if self.paused:
            consumer.pause(*(consumer.assignment() - consumer.paused()))
        elif held := consumer.paused():
            consumer.resume(*held)

    def _consumers(self) -> list[Any]:
        """The aiokafka consumer of every started subscriber of the broker. Found by its type,
        aiokafka's public one: FastStream exports no subscriber class to test against."""
        found = (getattr(sub, "consumer", None) for sub in self.broker.subscribers)
        return [consumer for consumer in found if isinstance(consumer, AIOKafkaConsumer)]


async def _report_lag(consumers: list[Any]) -> None:
    """Messages between each consumer's position and the end of its assigned partitions, by
    topic; 0 for subscribed topics without assigned partitions. The broker reports the end with
    each fetch, so it is as old as the last fetch (paused partitions are not fetched)."""
    lag: dict[str, int] = {}
    for consumer in consumers:
        lag |= {topic: lag.get(topic, 0) for topic in consumer.subscription()}
        ends = [(tp, consumer.highwater(tp)) for tp in consumer.assignment()]
        for tp, end in ends:
            if end is None:  # not fetched yet
                continue
            try:  # immediate once fetched; bounded in case an offset reset is under way
                position = await asyncio.wait_for(consumer.position(tp), _POSITION_TIMEOUT)
            except (IllegalStateError, TimeoutError):  # revoked or resetting meanwhile
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - position)
    for topic, count in lag.items():
        metrics.CONSUMER_LAG.labels(topic).set(count)

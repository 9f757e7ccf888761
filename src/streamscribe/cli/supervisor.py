"""`streamscribe up`: the embedded broker if needed, topics, and one process per service (or one
for all, `--single-process`); restarts a worker that dies, stops everything it started on
SIGINT/SIGTERM. On the embedded broker it also resumes unfinished media at start and recycles
the broker when it has grown and the pipeline is idle (`resume.py`, `recycle.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from streamscribe.cli.broker import EmbeddedBroker, is_listening, loopback_address
from streamscribe.cli.recycle import broker_rss, busy, keep_dead_letters, restore_dead_letters
from streamscribe.cli.resume import resume_unfinished
from streamscribe.common.drain import marker
from streamscribe.common.errors import ConfigError, StreamscribeError
from streamscribe.common.kafka import connected, ensure_topics
from streamscribe.common.settings import CommonSettings, ServiceSection
from streamscribe.embed.settings import EmbedSettings
from streamscribe.embed.store.ledger import open_ledger

STOP_MARGIN_SECONDS = 10.0  # beyond the workers' own grace, before they are killed
RESTART_BACKOFF_MAX = 30.0


SECTION_OF = {"all": "embed"}
API_SERVERS = {"embed", "all"}  # who serves the HTTP API
REPLICA_PORT_STEP = 10
STABLE_SECONDS = 60.0  # a worker that lived this long restarts without backoff
WORKER_MALLOC = {
    # glibc's per-thread malloc arenas let RSS creep up under threaded inference
    "MALLOC_ARENA_MAX": "2",
    # a fixed threshold: buffers of 4 MiB and more (inference scratch) are mapped and handed
    # back on free, where glibc's sliding threshold leaves them in the heap to fragment it
    "MALLOC_MMAP_THRESHOLD_": str(4 * 2**20),
}


@dataclass
class Worker:
    """One worker process of a service (`all`: every stage in one); replicas differ by port."""

    name: str
    section: ServiceSection
    replica: int = 0
    process: asyncio.subprocess.Process | None = None
    restarts: int = field(default=0)
    started_at: float = field(default=0.0)
    port: int = field(default=-1)
    """Its HTTP port, from `plan_ports`; until then the one its settings give."""

    def __post_init__(self) -> None:
        if self.port < 0:
            self.port = self.wanted_port

    @property
    def wanted_port(self) -> int:
        # replicas step by REPLICA_PORT_STEP: the services' default ports are adjacent
        # (9101-9103), so +1 per replica would give ingest's second replica transcribe's port
        if self.section.http_port == 0:
            return 0  # the worker picks a free one
        return self.section.http_port + REPLICA_PORT_STEP * self.replica

    @property
    def label(self) -> str:
        return f"{self.name}-{self.replica}" if self.replica else self.name

    @property
    def base_url(self) -> str:
        return f"http://{self.section.http_host}:{self.port}"

    async def start(self) -> None:
        env = {
            **WORKER_MALLOC,
            **os.environ,
            # the one-process worker serves on embed's port (with the HTTP API)
            f"STREAMSCRIBE_{SECTION_OF.get(self.name, self.name).upper()}__HTTP_PORT": str(
                self.port
            ),
        }
        self.started_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamscribe.cli", "worker", self.name, env=env,
            stdout=sys.stderr,  # up's own stdout carries only its status lines
        )  # fmt: skip

    def restart_delay(self) -> float:
        """Backoff grows with crashes in a row; a worker that ran a while starts afresh."""
        if time.monotonic() - self.started_at > STABLE_SECONDS:
            self.restarts = 0
        self.restarts += 1
        return float(min(2.0 ** (self.restarts - 1), RESTART_BACKOFF_MAX))

    async def stop(self, grace: float) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), grace + STOP_MARGIN_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def plan_ports(workers: list[Worker], taken: set[int], echo: Callable[[str], None]) -> None:
    """Give every worker a port of its own before any starts: each service's first worker its
    configured port (the API's address stays where clients look), then the replicas theirs;
    a port planned twice, held by `taken` (the embedded broker) or by a process already
    listening goes to a free port, logged with the setting that would choose it."""
    used = set(taken)
    for worker in sorted(workers, key=lambda w: w.replica):
        wanted = worker.wanted_port
        if wanted and (wanted in used or is_listening(worker.section.http_host, wanted)):
            worker.port = _free_port(worker.section.http_host, used)
            section = SECTION_OF.get(worker.name, worker.name).upper()
            echo(
                f"{worker.label}: port {wanted} is taken or planned for another; using "
                f"{worker.port} (STREAMSCRIBE_{section}__HTTP_PORT sets the first of its "
                f"service's ports, replicas add {REPLICA_PORT_STEP} each)"
            )
        else:
            worker.port = wanted
        used.add(worker.port)


def _free_port(host: str, used: set[int]) -> int:
    """A port nobody listens on now and no worker is planned on."""
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in used:
            return port


class Supervisor:
    def __init__(
        self,
        settings: CommonSettings,
        sections: dict[str, ServiceSection],
        echo: Callable[[str], None],
        replicas: int = 1,
        index: EmbedSettings | None = None,
    ) -> None:
        self.settings = settings
        self.index = index or EmbedSettings()
        self.ready_timeout = 600.0
        self.last_busy = time.monotonic()
        self.draining = False
        self.workers = [
            Worker(name, section, replica)
            for name, section in sections.items()
            for replica in range(replicas)
        ]
        self.echo = echo
        broker = loopback_address(settings.kafka.bootstrap_servers)
        plan_ports(self.workers, {broker[1]} if broker else set(), echo)
        self.broker: EmbeddedBroker | None = None
        self.stopping = asyncio.Event()

    async def run(self, ready_timeout: float) -> int:
        self.ready_timeout = ready_timeout
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            await self._start_broker()
            await ensure_topics(self.settings.kafka, self.settings.topics)
            if self.broker:  # a fresh, empty broker: the ledger says what was in progress
                self._end_drain()  # a drain cut short by a kill must not hold new media back
                await self._resume()
            for worker in self.workers:
                await worker.start()
            await self._await_ready(ready_timeout)
            for worker in self.workers:
                self.echo(f"{worker.label}: metrics {worker.base_url}/metrics")
            for worker in self.workers:
                if worker.name in API_SERVERS:
                    self.echo(f"{worker.label}: HTTP API {worker.base_url} (/openapi.json)")
            self.echo("streamscribe ready")
            await self._watch()
            return 0
        except ConfigError as exc:
            self.echo(f"error: {exc}")
            return 1
        finally:
            await self._stop_all()

    async def _start_broker(self) -> None:
        address = loopback_address(self.settings.kafka.bootstrap_servers)
        if address is None or await asyncio.to_thread(is_listening, *address):
            self.echo(f"broker: {self.settings.kafka.bootstrap_servers}")
            return
        self.broker = EmbeddedBroker(*address, self.settings.data_dir / "logs" / "tansu.log")
        await self.broker.start()
        self.echo(f"broker: embedded Tansu on {address[0]}:{address[1]} (memory only)")

    async def _await_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = list(self.workers)
        while pending:
            if self.stopping.is_set():
                raise ConfigError("stopped before every service was ready")
            for worker in list(pending):
                if worker.process and worker.process.returncode is not None:
                    raise ConfigError(f"{worker.label} exited with {worker.process.returncode}")
                if await asyncio.to_thread(worker.ready):
                    pending.remove(worker)
            if loop.time() > deadline:
                names = ", ".join(w.label for w in pending)
                raise ConfigError(f"not ready after {timeout:.0f}s: {names}")
            await asyncio.sleep(0.5)

    async def _resume(self) -> None:
        ledger = await asyncio.to_thread(open_ledger, self.index)
        try:
            async with connected(self.settings.kafka, "up") as broker:
                count = await resume_unfinished(broker, self.settings, ledger)
        finally:
            ledger.close()
        if count:
            self.echo(f"resumed {count} unfinished media from the ledger")

    async def _maybe_recycle(self) -> None:
        """Restart the embedded broker empty once it has grown and the pipeline is idle; past
        the drain size, stop starting new media first so that it becomes idle."""
        if self.broker is None or self.broker.process is None:
            return
        size = await asyncio.to_thread(broker_rss, self.broker.process.pid)
        embedded = self.settings.embedded
        if size < embedded.recycle_rss_bytes:
            return
        if size >= embedded.drain_rss_bytes and not self.draining:
            self.draining = True
            marker(self.settings.data_dir).touch()
            self.echo(f"broker: draining the embedded broker ({size / 2**20:.0f} MiB): "
                      "new media wait until it is recycled")  # fmt: skip
        if not await self._idle():
            return
        self.echo(f"broker: recycling the embedded broker ({size / 2**20:.0f} MiB, idle)")
        kept = await keep_dead_letters(self.settings)
        await asyncio.gather(*(w.stop(self.settings.shutdown_grace_seconds) for w in self.workers))
        await self.broker.stop()
        await self.broker.start()
        await ensure_topics(self.settings.kafka, self.settings.topics)
        async with connected(self.settings.kafka, "up") as broker:
            await restore_dead_letters(broker, kept)
        self._end_drain()
        await self._resume()
        for worker in self.workers:
            await worker.start()
        await self._await_ready(self.ready_timeout)
        self.echo("broker: recycled; streamscribe ready")

    def _end_drain(self) -> None:
        self.draining = False
        marker(self.settings.data_dir).unlink(missing_ok=True)

    async def _idle(self) -> bool:
        """Nothing in hand or waiting in any worker, and no unfinished media changed lately,
        for `idle_seconds`: recycling then costs nothing but a worker restart. While draining,
        media waiting to start do not count, and the window is `drain_idle_seconds`."""
        embedded = self.settings.embedded
        window = embedded.drain_idle_seconds if self.draining else embedded.idle_seconds
        try:
            for worker in self.workers:
                if await asyncio.to_thread(busy, f"{worker.base_url}/metrics"):
                    self.last_busy = time.monotonic()
            ledger = await asyncio.to_thread(open_ledger, self.index)
            try:
                unfinished = await asyncio.to_thread(ledger.unfinished)
            finally:
                ledger.close()
        except (OSError, StreamscribeError):
            return False  # a worker restarting, the database busy: not now
        if self.draining:
            unfinished = [record for record in unfinished if record.state != "requested"]
        recent = time.time() - window
        if any(record.updated_at > recent for record in unfinished):
            self.last_busy = time.monotonic()
        return time.monotonic() - self.last_busy >= window

    def _check_interval(self) -> float:
        # draining holds new media back: look often, so they wait no longer than needed
        every = self.settings.embedded.check_seconds
        return min(every, 2.0) if self.draining else every

    async def _watch(self) -> None:
        """Restart a worker that exits, with backoff, until asked to stop; keep the embedded
        broker bounded."""
        next_check = time.monotonic() + self._check_interval()
        while not self.stopping.is_set():
            if time.monotonic() >= next_check:
                await self._maybe_recycle()
                next_check = time.monotonic() + self._check_interval()
            for worker in self.workers:
                if worker.process and worker.process.returncode is not None:
                    delay = worker.restart_delay()
                    self.echo(
                        f"{worker.label} exited with {worker.process.returncode}; "
                        f"restarting in {delay:.0f}s"
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), delay)
                    if not self.stopping.is_set():
                        await worker.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def _stop_all(self) -> None:
        grace = self.settings.shutdown_grace_seconds
        await asyncio.gather(*(worker.stop(grace) for worker in self.workers))
        if self.broker:
            await self.broker.stop()

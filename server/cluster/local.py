"""A cluster on this machine, on free loopback ports: replicas of the server on one PostgreSQL database, and
HAProxy in front of them (`make demo-cluster`, the tests, the benchmarks). The database is the caller's."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from envvars_server.at_rest import KEY_FILE, load_key
from envvars_server.datadir import FILE_MODE, secure_data_dir
from envvars_server.launch import ServerProcess, free_port, wait_until_answers
from envvars_server.store import PostgresStore

SECRET_FILE = "cluster.secret"


def _private_file(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


def haproxy_config(port: int, replicas: Sequence[ServerProcess]) -> str:
    """HAProxy in front of `replicas` on 127.0.0.1:`port`: round robin over those that answer their health check;
    a request that cannot reach one is sent to another. Checks are patient: on a loaded host a slow answer is no
    reason to take a replica out (with all out, HAProxy would refuse every request)."""
    servers = "\n".join(f"    server replica-{number} 127.0.0.1:{replica.port} check inter 2s fall 3 rise 1"
                        for number, replica in enumerate(replicas, 1))
    return f"""global
    maxconn 2048
defaults
    mode http
    timeout connect 5s
    timeout client 700s
    timeout server 700s
    timeout check 10s
    retries 3
    option redispatch
frontend envvars
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /openapi.json
{servers}
"""


class LocalCluster:
    """`size` replicas (node ids `node-1`...) on the database `database`, each with a data dir under `root`, and
    HAProxy before them at `url`; a context manager. The replicas share a fresh cluster secret and one at-rest key
    (a value sealed by one opens on every other)."""

    def __init__(self, root: Path, database: str, size: int = 3, log: IO[str] | None = None,
                 node_timeout_s: float = 10.0, args: Sequence[str] = ()):
        self.root = root
        self.database = database
        secure_data_dir(root)
        secret_file = root / SECRET_FILE
        _private_file(secret_file, secrets.token_hex(32).encode())
        self.replicas: list[ServerProcess] = []
        for number in range(1, size + 1):
            port = free_port()
            self.replicas.append(ServerProcess(root / f"node-{number}", log=log, port=port, args=[
                "--database", database, "--node-id", f"node-{number}", "--advertise-url", f"http://127.0.0.1:{port}",
                "--cluster-secret-file", str(secret_file), "--node-timeout", str(node_timeout_s),
                "--at-rest-key", str(root / KEY_FILE), *args]))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.balancer: subprocess.Popen[str] | None = None
        self._store: PostgresStore | None = None

    def start(self) -> LocalCluster:
        """Start the replicas, then the load balancer, and wait until it answers."""
        load_key(self.root / KEY_FILE)  # one at-rest key for every replica, made before any starts
        try:
            for replica in self.replicas:
                replica.start()
            config = self.root / "haproxy.cfg"
            config.write_text(haproxy_config(self.port, self.replicas))
            haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
            self.balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=self.log or subprocess.DEVNULL,
                                             stderr=self.log or subprocess.DEVNULL, text=True, start_new_session=True)
            wait_until_answers("haproxy", self.url + "/openapi.json", self.balancer, 30)
        except BaseException:
            self.stop()
            raise
        return self

    def store(self) -> PostgresStore:
        """The shared database's store, opened in this process (once; closed when the cluster stops)."""
        if self._store is None:
            self._store = PostgresStore(self.database, max_connections=2)
        return self._store

    def token(self, user: str) -> str:
        """A new API token for `user` (in the shared database)."""
        return self.store().create_token(user)

    def user_id(self, token: str) -> str | None:
        """The id of the user `token` belongs to."""
        return self.store().user_for_token(token)

    def stop(self) -> None:
        """Stop the load balancer and every replica, and close this process's store."""
        if self._store is not None:
            self._store.close()
            self._store = None
        if self.balancer is not None and self.balancer.poll() is None:
            self.balancer.terminate()
            self.balancer.wait(timeout=15)
        for replica in self.replicas:
            replica.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

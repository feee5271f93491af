"""server_throughput: requests/s of GET and PUT /api/v1/env_vars at 16 concurrent connections, vs a
FastAPI hello-world route served the same way (bench/hello_app.py).

The load comes from bench/loadgen.py in a process of its own, bounded in time and in count.
GET reads a 20-key set; PUT upserts one key, as the provider does for a changed value; every
acknowledged PUT is durable (SQLite WAL, synchronous=FULL), so each waits for an fsync.

The database floor, measured right after each measurement of the server: as many store
transactions as the server just answered requests, of the same shape (the token's user, then the
20-key read or the 1-key upsert), through the store's own code (server/store/sqlite.py) from 16
threads at once, without HTTP. Server rate / floor rate is the share of a request's time that is
the store; the rest is the web stack.

The cluster: the same load through HAProxy before three replicas on one PostgreSQL (fsync on, as durable as
the SQLite file), all on this machine, alternated with the single server on SQLite (`server_throughput.cluster_*`:
cluster / single).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.common import REPO, Figure, Settings, alternate, ratio_figure
from envvars_server.cluster.local import LocalCluster
from envvars_server.launch import ServerProcess, free_port, wait_until_answers
from envvars_server.store.sqlite import SqliteStore

CONNECTIONS = 16
MAX_REQUESTS = 500_000
PUT_VARS = {"BENCH_KEY_00": "value"}
PUT_BODY = json.dumps({"vars": PUT_VARS, "replace": False})
SEED = {f"BENCH_KEY_{n:02d}": f"value-{n}" for n in range(20)}
PLATFORM = "vers"  # whose routes /api/v1/env_vars are


def rate(port: int, method: str, path: str, settings: Settings, headers: dict[str, str] | None = None,
         answered: list[int] | None = None) -> float:
    """Requests/s the server on `port` answered (their number appended to `answered`); any answer but 200
    fails the benchmark."""
    job = {"host": "127.0.0.1", "port": port, "method": method, "path": path, "headers": headers or {},
           "body": PUT_BODY if method == "PUT" else None, "connections": CONNECTIONS,
           "warmup": settings.pick(1.0, 0.2), "duration": settings.pick(4.0, 0.5), "max_requests": MAX_REQUESTS}
    done = subprocess.run([sys.executable, "-m", "bench.loadgen"], input=json.dumps(job), capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    if set(result["statuses"]) != {"200"}:
        raise AssertionError(f"{method} {path} answered {result['statuses']}")
    if answered is not None:
        answered.append(int(result["requests"]))
    return float(result["rate"])


class StoreFloor:
    """The store the server would use, in this process, seeded as the server is."""

    def __init__(self, data_dir: Path):
        self.store = SqliteStore(data_dir)
        self.token = self.store.create_token("bench")
        self.store.put_vars(PLATFORM, self._user(), SEED, replace=True)

    def _user(self) -> str:
        user = self.store.user_for_token(self.token)
        if user is None:
            raise AssertionError("the floor's token has no user")
        return user

    def rate(self, method: str, count: int) -> float:
        """Transactions/s for `count` transactions of one request's shape, from CONNECTIONS threads."""
        def one(_: int) -> None:
            user = self._user()
            if method == "GET":
                self.store.get_vars(PLATFORM, user)
            else:
                self.store.put_vars(PLATFORM, user, PUT_VARS, replace=False)

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            start = time.perf_counter()
            list(pool.map(one, range(count), chunksize=max(1, count // (CONNECTIONS * 8))))
            return count / (time.perf_counter() - start)


class HelloServer:
    """bench/hello_app.py in a child process on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "bench.hello_app", "--port", str(self.port)],
                                        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_answers("the hello-world server", f"http://127.0.0.1:{self.port}/hello", self.process, 30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate it."""
        self.process.terminate()
        self.process.wait(timeout=15)


def served_then_floor(port: int, method: str, settings: Settings, auth: dict[str, str], floor: StoreFloor,
                      floors: list[float]) -> float:
    """The server's rate; then the floor's for as many transactions, appended to `floors`."""
    answered: list[int] = []
    served = rate(port, method, "/api/v1/env_vars", settings, auth, answered)
    floors.append(floor.rate(method, answered[0]))
    return served


def on_cluster(settings: Settings, single: ServerProcess, single_auth: dict[str, str]) -> list[Figure]:
    """GET and PUT through the balancer of three replicas on PostgreSQL, vs the single server on SQLite."""
    from tests.postgres import PostgresServer

    postgres = PostgresServer(fsync=True)
    try:
        with LocalCluster(settings.tmp / "cluster", postgres.new_database()) as cluster:
            auth = {"Authorization": f"Bearer {cluster.token('bench')}"}
            requests.put(f"{cluster.url}/api/v1/env_vars", json={"vars": SEED, "replace": True}, headers=auth,
                         timeout=30).raise_for_status()
            figures = []
            for method in ("GET", "PUT"):
                subjects, baselines = alternate(partial(rate, cluster.port, method, "/api/v1/env_vars", settings, auth),
                                                partial(rate, single.port, method, "/api/v1/env_vars", settings,
                                                        single_auth), n=settings.pick(5, 1))
                figures.append(ratio_figure(
                    f"server_throughput.cluster_{method.lower()}", subjects, baselines, "req/s",
                    note="three replicas on PostgreSQL behind HAProxy vs one server on SQLite, on the same cores"))
            return figures
    finally:
        postgres.stop()


def run(settings: Settings) -> list[Figure]:
    """Six figures: GET and PUT, each vs the hello-world, vs the database floor, and on a cluster vs alone."""
    floor = StoreFloor(settings.tmp / "floor")
    with ServerProcess(settings.tmp / "data") as server:
        auth = {"Authorization": f"Bearer {server.token('bench')}"}
        requests.put(f"{server.url}/api/v1/env_vars", json={"vars": SEED, "replace": True}, headers=auth,
                     timeout=30).raise_for_status()
        hello = HelloServer()
        try:
            figures = []
            for method in ("GET", "PUT"):
                floors: list[float] = []
                subjects, baselines = alternate(partial(served_then_floor, server.port, method, settings, auth, floor,
                                                        floors),
                                                partial(rate, hello.port, method, "/hello", settings),
                                                n=settings.pick(5, 1))
                name = f"server_throughput.{method.lower()}"
                figures.append(ratio_figure(name, subjects, baselines, "req/s", target=0.5, higher_is_better=True))
                figures.append(ratio_figure(f"{name}_vs_floor", subjects, floors, "req/s",
                                            note="floor: the same transactions through the store, no HTTP; the "
                                                 "ratio is the store's share of a request"))
        finally:
            hello.stop()
        figures += on_cluster(settings, server, auth)
    return figures

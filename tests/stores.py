"""The stores the servers of the suites run on: SQLite, and PostgreSQL in the suites whose guarantees the README
promises on both (`BOTH_STORES`), and three replicas on PostgreSQL in those of them about what a replica that
forwards must still refuse (`ON_CLUSTER`).

In those suites every test that reaches a server (`server`, or `database_url` for the servers it starts itself) runs
once per store (`store_kind`, its id `sqlite`, `postgres` or `cluster`), the PostgreSQL run on a fresh database of
the session's PostgreSQL server (`tests/postgres.py`), the cluster's server a `tests/cluster.py` `ClusterServer`
(its sessions spread over the replicas that do not hold the suite's workloads, and the balancer: `next_url`);
elsewhere the servers keep SQLite. Slow trials run a share on PostgreSQL (`SHARE`, used by `tests/platforms.py`'s
`trials`), and so do the cluster's `sweep`s (`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from envvars_server.store import DB_FILE, Store
from tests.cluster import ClusterServer
from tests.postgres import PostgresServer, dump

BOTH_STORES = ("test_auth_isolation", "test_bad_input", "test_concurrency", "test_durability", "test_sevalla_at_rest")
STORES = ("sqlite", "postgres")
ON_CLUSTER = ("test_auth_isolation", "test_bad_input")  # both-stores suites run on `CLUSTER` too
CLUSTER = "3 replicas on postgres"  # the store of `tests/cluster.py`'s servers, as the cluster suites name it
SHARE = {"sqlite": 1.0, "postgres": 0.5, CLUSTER: 0.5}  # of a slow suite's trials, per store (`make test`; soak: all)


class Server(Protocol):
    """What the both-stores suites use of their server: a `ServerProcess`, or a `ClusterServer`."""

    @property
    def url(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def database(self) -> str | None: ...
    def token(self, user: str) -> str: ...
    def store(self) -> Store: ...


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the both-stores suites' tests that reach a server once per store, grouped by store within a module."""
    module = metafunc.module.__name__.rpartition(".")[2]
    if module in BOTH_STORES and "store_kind" in metafunc.fixturenames:
        kinds = [*STORES, *([CLUSTER] if module in ON_CLUSTER else [])]
        metafunc.parametrize("store_kind", kinds, indirect=True, scope="module",
                             ids=["cluster" if kind == CLUSTER else kind for kind in kinds])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the cluster, a `sweep` runs a stable share of its cases (`SHARE`, chosen by a hash of each case's id): its
    cases are refused by the replica they reach, before any workload is looked up, as on one server."""
    def dropped(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return (callspec is not None and callspec.params.get("store_kind") == CLUSTER
                and item.get_closest_marker("sweep") is not None
                and zlib.crc32(item.nodeid.encode()) % 1000 >= SHARE[CLUSTER] * 1000)

    deselected = [item for item in items if dropped(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not dropped(item)]


@pytest.fixture(scope="session", name="store_kind")  # named apart: fixtures take `store_kind` as a parameter
def store_kind_fixture(request: pytest.FixtureRequest) -> str:
    """The store of the servers a test uses: "sqlite", or "postgres" in a both-stores suite's second run."""
    return str(getattr(request, "param", STORES[0]))


def new_database(request: pytest.FixtureRequest, store_kind: str) -> str | None:
    """The `--database` of a new server: a fresh database for "postgres", None (the data dir's SQLite file) else."""
    assert store_kind != CLUSTER, "a cluster's servers are tests/cluster.py's"
    if store_kind != "postgres":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, store_kind: str) -> Iterator[str | None]:
    """The `--database` of the servers a test starts itself (`conftest.start_server`), and checked to hold what they
    wrote."""
    url = new_database(request, store_kind)
    yield url
    if url is not None:
        assert_written(url)


def assert_written(url: str) -> None:
    """The servers on the database at `url` kept their data there: variables or workload records."""
    with psycopg.connect(url) as db:
        [(rows,)] = db.execute("SELECT (SELECT count(*) FROM env_vars) + (SELECT count(*) FROM machines)").fetchall()
    assert rows > 0, "the server wrote nothing to PostgreSQL"


def check_store(server: Server) -> None:
    """The server's store is where it was told and sound: SQLite's integrity check passes, or the data dir (every
    replica's) holds no SQLite file and the database holds what the server wrote."""
    if server.database is None:
        with sqlite3.connect(server.data_dir / DB_FILE) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    else:
        replicas = server.cluster.replicas if isinstance(server, ClusterServer) else [server]
        assert not any((replica.data_dir / DB_FILE).exists() for replica in replicas)
        assert_written(server.database)


def next_url(server: Server, balancer: bool = True) -> str:
    """Where a suite's next session or request goes: the server, or the cluster's next other replica or balancer
    (`balancer` false: replica)."""
    return server.next_url(balancer) if isinstance(server, ClusterServer) else server.url


def stored_bytes(server: Server) -> bytes:
    """Everything the server's store holds, as bytes: its SQLite files, or a `pg_dump` of its database."""
    if server.database is None:
        return b"".join(path.read_bytes() for path in sorted(server.data_dir.glob(DB_FILE + "*")))
    return dump(server.database)


def sql(server: Server, statement: str, args: Sequence[Any] = ()) -> list[Any]:
    """A statement (`?` placeholders) run on the server's store behind its back, committed; its rows."""
    if server.database is None:
        with sqlite3.connect(server.data_dir / DB_FILE) as db:
            return db.execute(statement, args).fetchall()
    with psycopg.connect(server.database) as pg:
        cursor = pg.execute(statement.replace("?", "%s"), args)
        return cursor.fetchall() if cursor.description else []

"""The stores the servers of the suites run on: SQLite, and PostgreSQL in the suites whose guarantees the README
promises on both (`BOTH_STORES`).

In those suites every test that reaches a server (`server`, or `database_url` for the servers it starts itself) runs
once per store (`store_kind`, its id `sqlite` or `postgres`), the PostgreSQL run on a fresh database of the session's
PostgreSQL server (`tests/postgres.py`); elsewhere the servers keep SQLite. Slow trials run a share on PostgreSQL
(`SHARE`, used by `tests/platforms.py`'s `trials`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE
from tests.postgres import PostgresServer, dump

BOTH_STORES = ("test_auth_isolation", "test_bad_input", "test_concurrency", "test_durability", "test_sevalla_at_rest")
STORES = ("sqlite", "postgres")
CLUSTER = "3 replicas on postgres"  # the store of `tests/cluster.py`'s servers, as the cluster suites name it
SHARE = {"sqlite": 1.0, "postgres": 0.5, CLUSTER: 0.5}  # of a slow suite's trials, per store (`make test`; soak: all)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the both-stores suites' tests that reach a server once per store, grouped by store within a module."""
    if metafunc.module.__name__.rpartition(".")[2] in BOTH_STORES and "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", STORES, indirect=True, scope="module")


@pytest.fixture(scope="session", name="store_kind")  # named apart: fixtures take `store_kind` as a parameter
def store_kind_fixture(request: pytest.FixtureRequest) -> str:
    """The store of the servers a test uses: "sqlite", or "postgres" in a both-stores suite's second run."""
    return str(getattr(request, "param", STORES[0]))


def new_database(request: pytest.FixtureRequest, store_kind: str) -> str | None:
    """The `--database` of a new server: a fresh database for "postgres", None (the data dir's SQLite file) else."""
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


def check_store(server: ServerProcess) -> None:
    """The server's store is where it was told and sound: SQLite's integrity check passes, or the data dir holds no
    SQLite file and the database holds what the server wrote."""
    if server.database is None:
        with sqlite3.connect(server.data_dir / DB_FILE) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    else:
        assert not (server.data_dir / DB_FILE).exists()
        assert_written(server.database)


def stored_bytes(server: ServerProcess) -> bytes:
    """Everything the server's store holds, as bytes: its SQLite files, or a `pg_dump` of its database."""
    if server.database is None:
        return b"".join(path.read_bytes() for path in sorted(server.data_dir.glob(DB_FILE + "*")))
    return dump(server.database)


def sql(server: ServerProcess, statement: str, args: Sequence[Any] = ()) -> list[Any]:
    """A statement (`?` placeholders) run on the server's store behind its back, committed; its rows."""
    if server.database is None:
        with sqlite3.connect(server.data_dir / DB_FILE) as db:
            return db.execute(statement, args).fetchall()
    with psycopg.connect(server.database) as pg:
        cursor = pg.execute(statement.replace("?", "%s"), args)
        return cursor.fetchall() if cursor.description else []

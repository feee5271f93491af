"""A cluster for a test module: the session's PostgreSQL (`tests/postgres.py`), a database of the module's own,
three replicas and HAProxy in front (`envvars_server.cluster.local`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envvars_server.cluster.local import LocalCluster
from tests.postgres import PostgresServer

NODE_TIMEOUT_S = 5.0  # short, so that a replica's silence shows within a test; long enough for a loaded host


@pytest.fixture(scope="module")
def cluster(isolation: None, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) \
        -> Iterator[LocalCluster]:
    """Three replicas on one database behind HAProxy, for the whole module; tests stay apart by using fresh users."""
    root = tmp_path_factory.mktemp("cluster")
    with (root.parent / f"{root.name}.log").open("w") as log, LocalCluster(
            root / "nodes", postgres_server.new_database(), log=log, node_timeout_s=NODE_TIMEOUT_S) as running:
        yield running

"""A cluster for a test module: the session's PostgreSQL (`tests/postgres.py`), a database of the module's own,
three replicas and HAProxy in front (`envvars_server.cluster.local`); and that cluster as the `server` of the
suites that run on it too (`ClusterServer`, `tests/stores.py`'s `CLUSTER`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import pytest

from envvars_server.cluster.local import LocalCluster
from envvars_server.store import Store
from tests.postgres import PostgresServer

NODE_TIMEOUT_S = 5.0  # short, so that a replica's silence shows within a test; long enough for a loaded host


@contextlib.contextmanager
def running_cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) \
        -> Iterator[LocalCluster]:
    """Three replicas on a fresh database behind HAProxy, logging beside their data dirs."""
    root = tmp_path_factory.mktemp("cluster")
    with (root.parent / f"{root.name}.log").open("w") as log, LocalCluster(
            root / "nodes", postgres_server.new_database(), log=log, node_timeout_s=NODE_TIMEOUT_S) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(isolation: None, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) \
        -> Iterator[LocalCluster]:
    """Three replicas on one database behind HAProxy, for the whole module; tests stay apart by using fresh users."""
    with running_cluster(postgres_server, tmp_path_factory) as running:
        yield running


class ClusterServer:
    """A running cluster as a suite's server: what the suites use of a `ServerProcess`, `url` being the first
    replica's (where a suite's victim or holder makes its workloads), and `next_url` each other replica and the
    balancer in turn (where its other sessions and requests go: what names those workloads reaches them through a
    replica that forwards, or refuses)."""

    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster
        self.url = cluster.replicas[0].url
        self.database = cluster.database
        self.data_dir = cluster.replicas[0].data_dir
        self._others = itertools.cycle([replica.url for replica in cluster.replicas[1:]] + [cluster.url])

    def next_url(self, balancer: bool = True) -> str:
        """The next other replica or the balancer (`balancer` false: the next other replica)."""
        url = next(self._others)
        return url if balancer or url != self.cluster.url else next(self._others)

    def store(self) -> Store:
        """The cluster's store, opened in this process."""
        return self.cluster.store()

    def token(self, user: str) -> str:
        """A new API token for `user` (in the shared database)."""
        return self.cluster.token(user)

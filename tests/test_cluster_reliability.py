"""The reliability suites' checks on three replicas behind HAProxy (`tests/cluster.py`): sixteen writers spread over
the replicas end in a serial order, a replica killed mid-write loses no acknowledged write, and 200 resources
through the balancer at --parallel 32 converge."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from envvars_server.cluster.local import LocalCluster
from tests import test_concurrency
from tests.cluster import cluster  # noqa: F401  (the module's cluster)
from tests.conftest import Api
from tests.hoody import new_container
from tests.stores import CLUSTER

# Phala's KMS keys are per data dir until they move into the store: a CVM's set sealed to one replica's key
# does not open on another.
SHARED_STORE_PLATFORMS = ["vers", "hoody", "sevalla", "vertra"]


@pytest.fixture
def spread_api(cluster: LocalCluster) -> Iterator[Callable[[], Api]]:  # noqa: F811
    """Like `new_api`, each new session on the next replica in turn (then the balancer)."""
    targets = itertools.cycle([replica.url for replica in cluster.replicas] + [cluster.url])
    sessions: list[Api] = []

    def make() -> Api:
        session = Api(next(targets), cluster.token(f"spread-{uuid.uuid4().hex[:8]}"))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.mark.parametrize("platform", SHARED_STORE_PLATFORMS)
def test_writers_spread_over_the_replicas_end_in_a_serial_order(spread_api: Callable[[], Api], platform: str) -> None:
    test_concurrency.test_sixteen_clients_merging_and_deleting_end_in_a_serial_order(spread_api, platform, CLUSTER)


def test_a_replica_killed_mid_write_loses_no_acknowledged_write(cluster: LocalCluster) -> None:  # noqa: F811
    token = cluster.token(f"crash-{uuid.uuid4().hex[:8]}")
    victim = cluster.replicas[1]
    targets = [victim.url, victim.url, cluster.url, cluster.replicas[0].url]
    container_id = new_container(Api(cluster.replicas[1].url, token))  # its workload dies with it; its map must not
    acknowledged: list[list[str]] = [[] for _ in targets]
    stop = threading.Event()

    def write(number: int) -> None:
        api = Api(targets[number], token)
        for n in itertools.count():
            if stop.is_set():
                return
            key = f"W{number}_{n}"
            try:
                vers = api.put("/api/v1/env_vars", json={"vars": {key: "v"}}, timeout=10)
                hoody = api.patch(f"/api/v1/containers/{container_id}/env", json={key: "v"}, timeout=10)
            except requests.RequestException:
                if targets[number] == victim.url:
                    return  # its replica is gone: what it acknowledged is what counts
                continue  # the balancer sends the next request to a live replica
            if vers.status_code == 200 and hoody.status_code == 200:
                acknowledged[number].append(key)

    writers = [threading.Thread(target=write, args=(number,)) for number in range(len(targets))]
    for writer in writers:
        writer.start()
    try:
        time.sleep(2)
        victim.kill()
        time.sleep(2)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        victim.start()
    reader = Api(cluster.replicas[2].url, token)
    stored = reader.get("/api/v1/env_vars").json()["vars"]
    mapped = reader.get(f"/api/v1/containers/{container_id}/env").json()["data"]["environment_vars"]
    written = [key for keys in acknowledged for key in keys]
    assert all(keys for keys in acknowledged[:2]), "the killed replica acknowledged nothing before it died"
    assert [key for key in written if key not in stored] == []
    assert [key for key in written if key not in mapped] == []


@pytest.mark.slow
def test_two_hundred_resources_through_the_balancer_converge(tmp_path: Path, cluster: LocalCluster) -> None:  # noqa: F811
    with Api(cluster.url, cluster.token(f"fleet-{uuid.uuid4().hex[:8]}")) as api:
        test_concurrency.test_two_hundred_resources_with_parallel_32_converge(  # type: ignore[arg-type]
            tmp_path, cluster, api, CLUSTER)

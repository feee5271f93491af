"""Three replicas on one PostgreSQL behind HAProxy (`tests/cluster.py`): a workload made on one replica is served
by every replica and the balancer; a forged forwarding header gets nothing; a silent replica's workloads are dead
while its sets stay, and come back with it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from envvars_server.cluster import signing
from envvars_server.cluster.local import SECRET_FILE, LocalCluster
from envvars_server.launch import ServerProcess, free_port
from tests.cluster import NODE_TIMEOUT_S, cluster  # noqa: F401  (the module's cluster)
from tests.conftest import Api
from tests.hoody import new_container, patch, restart, running_env


@pytest.fixture
def token(cluster: LocalCluster) -> str:  # noqa: F811
    return cluster.token(f"cluster-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def apis(cluster: LocalCluster, token: str) -> Iterator[list[Api]]:  # noqa: F811
    """One session per replica, then one through the balancer, all as the same user."""
    sessions = [Api(replica.url, token) for replica in cluster.replicas] + [Api(cluster.url, token)]
    yield sessions
    for session in sessions:
        session.close()


def new_vm(api: Api) -> str:
    response = api.post("/api/v1/vm/new_root", params={"wait_boot": "true"}, json={"vm_config": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["vm_id"])


def run(api: Api, vm_id: str, script: str) -> requests.Response:
    return api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["sh", "-c", script]})


def wait_for_state(api: Api, vm_id: str, state: str) -> None:
    """Poll the VM's metadata until it shows `state` (within a few node timeouts)."""
    deadline = time.monotonic() + NODE_TIMEOUT_S * 4
    while (shown := api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"]) != state:
        assert time.monotonic() < deadline, f"the VM is still {shown}, not {state}"
        time.sleep(0.2)


def test_a_vm_made_on_one_replica_is_served_by_every_replica_and_the_balancer(apis: list[Api]) -> None:
    first = apis[0]
    assert first.put("/api/v1/env_vars", json={"vars": {"GREETING": "hello"}}).status_code == 200
    vm_id = new_vm(first)
    listed = first.get("/api/v1/vm").json()
    for number, api in enumerate(apis):
        assert api.get("/api/v1/vm").json() == listed
        assert api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "running"
        # only node-1 holds the VM's sandbox: every other answer below was forwarded to it
        wrote = api.put(f"/api/v1/vm/{vm_id}/files", json={"path": f"/tmp/from-{number}", "content_b64": "aGk="})
        assert wrote.status_code == 200, wrote.text
        ran = run(api, vm_id, f'echo "$GREETING"; cat /tmp/from-{number}')
        assert ran.status_code == 200, ran.text
        assert ran.json()["stdout"] == "hello\nhi"
    restarted = apis[1].post(f"/_envvars/v1/workloads/{vm_id}/restart")
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["state"] == "running"
    assert apis[2].get(f"/_envvars/v1/workloads/{vm_id}/environment").json()["vars"]["GREETING"] == "hello"
    assert apis[3].delete(f"/api/v1/vm/{vm_id}").status_code == 200
    assert apis[0].get(f"/api/v1/vm/{vm_id}/metadata").status_code == 404


def test_a_commit_made_through_one_replica_is_restored_through_another(apis: list[Api]) -> None:
    vm_id = new_vm(apis[0])
    assert run(apis[1], vm_id, "echo kept > /root/mark").json()["exit_code"] == 0
    commit = apis[1].post(f"/api/v1/vm/{vm_id}/commit")
    assert commit.status_code == 201, commit.text
    restored = apis[2].post("/api/v1/vm/from_commit", json={"commit_id": commit.json()["commit_id"]})
    assert restored.status_code == 201, restored.text  # made on node-1, where the commit's disk is
    ran = run(apis[3], restored.json()["vm_id"], "cat /root/mark")
    assert ran.status_code == 200 and ran.json()["stdout"] == "kept\n"


def test_a_container_is_restarted_through_any_replica_with_its_stored_map(apis: list[Api]) -> None:
    container_id = new_container(apis[1])
    patch(apis[2], container_id, {"MODE": "blue"})
    restart(apis[3], container_id)
    assert running_env(apis[0], container_id)["MODE"] == "blue"
    synced = [api.get(f"/api/v1/containers/{container_id}/env").json() for api in apis]
    assert all(answer == synced[0] for answer in synced)


def test_an_error_of_the_owning_node_is_answered_as_it_is(apis: list[Api]) -> None:
    vm_id = new_vm(apis[0])
    paused = apis[1].patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Paused"})
    assert paused.status_code == 200, paused.text
    refused = run(apis[2], vm_id, "true")
    assert refused.status_code == 409
    assert refused.json() == {"error": f"VM {vm_id!r} is paused: set its state to Running first", "success": False}


def test_a_forged_forwarding_header_gets_nothing(cluster: LocalCluster, apis: list[Api], token: str) -> None:  # noqa: F811
    victim = cluster.user_id(token)
    assert victim is not None
    vm_id = new_vm(apis[0])
    target = f"/api/v1/vm/{vm_id}/exec"
    body = json.dumps({"command": ["sh", "-c", "echo owned > /tmp/pwned; cat /etc/environment"]}).encode()
    secret = (cluster.root / SECRET_FILE).read_bytes().strip()
    forgeries = {
        "made-up signature": f"v1 node=node-1 user={victim} ts={int(time.time())} "
                             f"body={hashlib.sha256(body).hexdigest()} sig={'0' * 64}",
        "another secret": signing.sign(b"x" * 32, "POST", target, "node-1", victim, body),
        "the real secret, another body": signing.sign(secret, "POST", target, "node-1", victim, b"{}"),
        "the real secret, a minute old": signing.sign(secret, "POST", target, "node-1", victim, body,
                                                      at=time.time() - 60),
        "not a signature at all": f"user={victim}",
    }
    for replica in cluster.replicas:  # the VM's own node too: none takes a header it cannot verify
        for what, header in forgeries.items():
            answer = requests.post(replica.url + target, data=body, timeout=30, headers={
                signing.HEADER: header, "Content-Type": "application/json"})
            assert answer.status_code == 403, (what, answer.text)
            assert answer.json()["success"] is False and "forwarded request refused" in answer.json()["error"]
    metadata = f"/api/v1/vm/{vm_id}/metadata"  # the control: what only a holder of the secret can sign is taken
    signed = signing.sign(secret, "GET", metadata, "node-1", victim, b"")
    assert requests.get(cluster.replicas[1].url + metadata, headers={signing.HEADER: signed}, timeout=30).ok
    checked = run(apis[0], vm_id, "test -e /tmp/pwned")
    assert checked.status_code == 200 and checked.json()["exit_code"] == 1  # nothing ran
    assert cluster.log is not None
    leaked = secret.decode() in Path(cluster.log.name).read_text()
    assert not leaked, "the cluster secret is in the replicas' log"


def test_a_second_replica_under_a_live_node_id_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:  # noqa: F811
    first = cluster.replicas[0]
    twin = ServerProcess(tmp_path / "twin", log=cluster.log, args=[
        option if option != first.url else f"http://127.0.0.1:{free_port()}" for option in first.args])
    with pytest.raises(RuntimeError, match="exited"):
        twin.start()
    assert cluster.log is not None
    assert "node id node-1 is taken" in Path(cluster.log.name).read_text()


def test_a_silent_replica_has_its_workloads_dead_and_its_sets_kept(cluster: LocalCluster,  # noqa: F811
                                                                   apis: list[Api]) -> None:
    node3, lb = apis[2], apis[3]
    assert node3.put("/api/v1/env_vars", json={"vars": {"KEPT": "yes"}}).status_code == 200
    vm_id = new_vm(node3)
    container_id = new_container(node3)
    patch(node3, container_id, {"ALSO": "kept"})
    cluster.replicas[2].kill()
    try:
        for survivor in apis[:2]:  # each replica reads the beats for itself
            wait_for_state(survivor, vm_id, "dead")
        states = {vm["vm_id"]: vm["state"] for vm in lb.get("/api/v1/vm").json()}
        assert states[vm_id] == "dead"
        assert lb.get("/api/v1/env_vars").json()["vars"] == {"KEPT": "yes"}
        assert lb.get(f"/api/v1/containers/{container_id}/env").json()["data"]["environment_vars"] == {
            "ALSO": "kept"}
        refused = run(apis[1], vm_id, "true")
        assert refused.status_code == 409 and "stopped answering" in refused.json()["error"]
    finally:
        cluster.replicas[2].start()
    for survivor in apis[:2]:  # once each has read node-3's first beat: the balancer may pick either
        wait_for_state(survivor, vm_id, "running")
    back = run(apis[0], vm_id, 'echo "$KEPT"')
    assert back.status_code == 200 and back.json()["stdout"] == "yes\n"
    restart(lb, container_id)  # it came back with the map of its last boot; a restart gives it the stored one
    assert running_env(lb, container_id)["ALSO"] == "kept"


@pytest.mark.parametrize(("options", "refusal"), [
    (["--node-id", "a"], "a replica needs --node-id, --advertise-url, --cluster-secret-file and --database"),
    (["--node-id", "a", "--advertise-url", "http://127.0.0.1:1", "--cluster-secret-file", "{secret}"],
     "a replica needs --node-id, --advertise-url, --cluster-secret-file and --database"),
    (["--node-id", "a b", "--advertise-url", "http://127.0.0.1:1", "--cluster-secret-file", "{secret}",
      "--database", "postgresql://nowhere/db"], "node id 'a b': letters, digits, '_', '.', '-', at most 64"),
    (["--node-id", "a", "--advertise-url", "http://127.0.0.1:1", "--cluster-secret-file", "{open_secret}",
      "--database", "postgresql://nowhere/db"], "{open_secret} is readable by others: chmod 600 it"),
])
def test_a_replica_refuses_to_start_without_what_a_cluster_needs(tmp_path: Path, options: list[str],
                                                                 refusal: str) -> None:
    files = {"secret": tmp_path / "secret", "open_secret": tmp_path / "open-secret"}
    for name, path in files.items():
        path.write_text("s" * 40)
        path.chmod(0o600 if name == "secret" else 0o644)
    shown = {name: str(path) for name, path in files.items()}
    done = subprocess.run([sys.executable, "-m", "envvars_server.cli", "serve", "--data-dir", str(tmp_path / "data"),
                           *(option.format(**shown) for option in options)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"envvars-server: cannot join the cluster: {refusal.format(**shown)}"

"""Attacks a tenant can make from inside its own VM, each performed for real against a server running as root.

A VM must never make the server read or write outside that VM's own disk, leave anything on the
host that another local user can use, or starve other users. Each test does what an attacker
would and checks that it got nothing.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from envvars_server.sandbox.host import SANDBOX_ID, host
from tests.conftest import Api
from tests.figures import figure

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the server confines VMs this way only as root")
# Where the host lacks loop devices or cgroups the server says so at start-up; these tests say so too.
needs_images = pytest.mark.skipif(not host().images, reason="no loop devices: VM disks are plain directories")
needs_cgroups = pytest.mark.skipif(set(host().cgroups) != {"freezer", "memory", "pids"},
                                   reason="cgroup v1 freezer, memory and pids are not all writable here")

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def boot(api: Api, **config: object) -> str:
    response = api.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": config})
    assert response.status_code == 201, response.text
    return str(response.json()["vm_id"])


def run(api: Api, vm_id: str, script: str, **extra: object) -> dict:
    response = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["sh", "-c", script], **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, with a small VM quota and per-user operation limit."""
    data_dir = tmp_path_factory.mktemp("secure-data")
    args = ["--max-vms-per-user", "3", "--vm-ops-per-user", "4", "--vm-max-procs", "64"]
    with (data_dir.parent / "secure-server.log").open("w") as log, ServerProcess(data_dir, log=log, args=args) as srv:
        yield srv


@pytest.fixture
def own_api(own_server: ServerProcess) -> Iterator[Api]:
    with Api(own_server.url, own_server.token(f"sec-{time.monotonic_ns()}")) as session:
        yield session


# -- freezing and copying a VM's disk -----------------------------------------------------------

@needs_cgroups
def test_pause_freezes_processes_in_nested_pid_namespaces(api: Api) -> None:
    vm_id = boot(api)
    # The escape the review used: a process in a pid namespace of its own (where the guest may make
    # one), else a daemon in a session of its own; either ticks into a file.
    tick = "sh -c 'while :; do date +%s.%N >> /tmp/tick; sleep 0.02; done'"
    run(api, vm_id, f"(unshare --user --map-root-user --pid --fork {tick} || setsid {tick}) >/dev/null 2>&1 &")
    time.sleep(0.3)
    assert api.patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Paused"}).status_code == 200
    paused_at = time.time()
    time.sleep(1.0)
    resumed_at = time.time()
    assert api.patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Running"}).status_code == 200
    time.sleep(0.3)
    ticks = [float(line) for line in run(api, vm_id, "cat /tmp/tick")["stdout"].split()]
    during = [tick for tick in ticks if paused_at + 0.05 < tick < resumed_at - 0.05]
    figure("vm freeze", nested_pid_namespace_ticks_while_paused=len(during), ticks_in_all=len(ticks))
    assert ticks and not during
    api.delete(f"/api/v1/vm/{vm_id}")


def test_symlink_swaps_during_commit_never_reach_host_files(api: Api, new_api, tmp_path: Path) -> None:
    victim = new_api()
    victim_secret = "VICTIM-SECRET-" + os.urandom(6).hex()
    assert victim.put("/api/v1/env_vars", json={"vars": {"VICTIM": victim_secret}}).status_code == 200
    victim_vm = boot(victim)
    host_canary = tmp_path / "canary"
    host_canary.mkdir()
    host_secret = "HOST-SECRET-" + os.urandom(6).hex()
    (host_canary / "secret").write_text(host_secret)
    host_canary.chmod(0o755)

    vm_id = boot(api)
    mountinfo = run(api, vm_id, "cat /proc/self/mountinfo")["stdout"]
    # What the VM learns of the host layout: nothing of the data dir (its own disk shows as "/").
    assert "vms" not in mountinfo and "server-data" not in mountinfo and str(tmp_path) not in mountinfo
    # A large tree, and an escaped process that keeps swapping its directories for links to host paths.
    targets = [str(host_canary), "/etc", "/proc/1/root/etc", "/"]
    script = (
        "mkdir -p /data && for i in $(seq 1 300); do mkdir -p /data/d$i && head -c 4096 /dev/urandom > /data/d$i/f;"
        " done; setsid sh -c 'while :; do for i in $(seq 1 300); do "
        + " ".join(f"rm -rf /data/d$i; ln -sfn {target} /data/d$i;" for target in targets)
        + " done; done' >/dev/null 2>&1 &"
    )
    run(api, vm_id, script, timeout_secs=60)
    copies = []
    for _ in range(3):
        time.sleep(0.2)
        commit = api.post(f"/api/v1/vm/{vm_id}/commit")
        assert commit.status_code == 201, commit.text
        restored = api.post("/api/v1/vm/from_commit", json={"commit_id": commit.json()["commit_id"]})
        assert restored.status_code == 201, restored.text
        copies.append(restored.json()["vm_id"])
        seen = run(api, copies[-1], "cat /data/*/secret /data/*/shadow /data/*/environment 2>/dev/null; "
                                    "grep -r -l -s SECRET / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr "
                                    "--exclude-dir=dev | head", timeout_secs=120)
        assert host_secret not in seen["stdout"] and victim_secret not in seen["stdout"]
        for path in ("/etc/shadow", f"{host_canary}/secret"):
            files = api.get(f"/api/v1/vm/{copies[-1]}/files", params={"path": path})
            assert files.status_code in (400, 404) or host_secret not in base64.b64decode(
                files.json()["content_b64"]).decode(errors="replace")
        api.delete(f"/api/v1/vm/{copies[-1]}")
    figure("vm commit escape", commits_while_swapping_links=len(copies), host_or_tenant_secrets_copied=0)
    victim.delete(f"/api/v1/vm/{victim_vm}")
    api.delete(f"/api/v1/vm/{vm_id}")


# -- what a VM leaves on the host ----------------------------------------------------------------

@needs_images
def test_setuid_files_planted_by_a_vm_give_nobody_root(api: Api, server: ServerProcess) -> None:
    vm_id = boot(api)
    put = api.put(f"/api/v1/vm/{vm_id}/files", json={
        "path": "/root/put-id", "content_b64": base64.b64encode(Path("/usr/bin/id").read_bytes()).decode(),
        "mode": 0o4755})
    assert put.status_code == 200, put.text
    run(api, vm_id, "cp /usr/bin/id /root/chmod-id && chmod 6755 /root/chmod-id")
    modes = run(api, vm_id, "stat -c '%a %u' /root/put-id /root/chmod-id")["stdout"].split("\n")
    assert modes[0] == "755 0"  # the files API drops the bits; a guest's own chmod keeps them in the VM

    # On the host the disk is mounted in the server's own mount namespace only: find it there.
    namespace = ["nsenter", f"--mount=/proc/{server_pid(server)}/ns/mnt", "--"]
    found = subprocess.run([*namespace, "sh", "-c", "ls -d /run/envvars-vms/*/root/chmod-id"],
                           capture_output=True, text=True, check=False).stdout.split()
    assert len(found) == 1, found
    info = subprocess.run([*namespace, "stat", "-c", "%u %a", found[0]], capture_output=True, text=True,
                          check=True).stdout.split()
    assert info == [str(SANDBOX_ID), "6755"]  # nobody's file on the host, never root's
    mount_line = next(line for line in Path(f"/proc/{server_pid(server)}/mountinfo").read_text().splitlines()
                      if line.split()[4] == str(Path(found[0]).parent.parent))
    assert "nosuid" in mount_line.split()[5] and "nodev" in mount_line.split()[5]
    # A local user who gets past the directory permissions (here: one in the sandbox group) runs it.
    as_user = ["setpriv", "--reuid=65534", f"--regid={SANDBOX_ID}", "--clear-groups", "--", found[0], "-u"]
    result = subprocess.run([*namespace, *as_user], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "65534", result  # not 0: the bit means nothing on the host
    # A plain local user does not get that far.
    denied = subprocess.run([*namespace, *NOBODY, "ls", "/run/envvars-vms"], capture_output=True, text=True,
                            check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    api.delete(f"/api/v1/vm/{vm_id}")


def test_data_dir_is_private_and_tightened_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir) as server:
        token = server.token("owner")
        with Api(server.url, token) as api:
            assert api.put("/api/v1/env_vars", json={"vars": {"K": "secret-value"}}).status_code == 200
            vm_id = boot(api)
            api.post(f"/api/v1/vm/{vm_id}/commit")
    # Loosen everything, as a careless copy or an old release would have left it.
    for path in [data_dir, *data_dir.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o666)
    with ServerProcess(data_dir):
        entries = [data_dir, *data_dir.iterdir(), *data_dir.glob("vms/*"), *data_dir.glob("vms/*/*"),
                   *data_dir.glob("commits/*"), *data_dir.glob("commits/*/*")]
        loose = [str(path) for path in entries if path.exists() and path.stat().st_mode & 0o077]
        assert not loose
        assert {p.name for p in data_dir.iterdir()} >= {"envvars.db", "vms", "commits"}
        for name in ("envvars.db", "envvars.db-wal"):
            reader = subprocess.run([*NOBODY, "cat", str(data_dir / name)], capture_output=True, check=False)
            assert reader.returncode != 0 and b"secret-value" not in reader.stdout


@needs_cgroups
def test_killed_server_leaves_no_vm_process_or_mount(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    with Api(server.url, server.token("owner")) as api:
        vm_id = boot(api)
        run(api, vm_id, "sleep 300 >/dev/null 2>&1 &")
    cgroup = next(Path("/sys/fs/cgroup/pids").rglob("envvars-vms"), None)
    pids_before = sum(len((group / "cgroup.procs").read_text().split()) for group in cgroup.iterdir()
                      if group.is_dir()) if cgroup else 0
    assert pids_before >= 2
    server.kill()
    time.sleep(0.5)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path) not in mounts
    survivors = subprocess.run(["pgrep", "-f", f"--hostname {vm_id}"], capture_output=True, text=True, check=False)
    assert survivors.stdout == ""


# -- limits ----------------------------------------------------------------------------------------

@needs_images
@needs_cgroups
def test_declared_memory_disk_and_process_limits_hold(own_api: Api) -> None:
    vm_id = boot(own_api, mem_size_mib=128, fs_size_mib=64)
    allocate = run(own_api, vm_id, "python3 -c 'b = bytearray(600 << 20); print(\"allocated\")' 2>&1; echo rc=$?")
    assert "allocated" not in allocate["stdout"], allocate
    fill = run(own_api, vm_id, "head -c 200M /dev/zero > /root/big; echo rc=$?; du -m /root/big | cut -f1")
    assert "rc=1" in fill["stdout"], fill
    written = int(fill["stdout"].split()[-1])
    assert written <= 64
    fork_bomb = ("import os, time\nn = 0\nfor _ in range(1000):\n    try:\n        pid = os.fork()\n"
                 "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n"
                 "    n += 1\nprint(n)")
    forks = run(own_api, vm_id, f"python3 -c '{fork_bomb}'", timeout_secs=60)
    processes = int(forks["stdout"].split()[-1])
    figure("vm limits", mib_written_of_200_on_a_64_mib_disk=written, processes_after_1000_forks=processes,
           allocation_of_600_mib_in_128_mib="failed")
    assert processes <= 64
    own_api.delete(f"/api/v1/vm/{vm_id}")


@needs_images
def test_sparse_files_stay_sparse_in_commits(own_api: Api, own_server: ServerProcess) -> None:
    vm_id = boot(own_api)
    run(own_api, vm_id, "truncate -s 2G /root/sparse")
    commit = own_api.post(f"/api/v1/vm/{vm_id}/commit")
    assert commit.status_code == 201
    image = own_server.data_dir / "commits" / commit.json()["commit_id"] / "disk.img"
    used_mib = image.stat().st_blocks * 512 >> 20
    figure("vm sparse commit", mib_a_2_gib_sparse_file_cost=used_mib)
    assert used_mib < 100
    own_api.delete(f"/api/v1/vm/{vm_id}")


def test_vm_quota_per_user(own_api: Api) -> None:
    vm_id = boot(own_api)
    branch = own_api.post(f"/api/v1/vm/{vm_id}/branch", params={"count": 100})
    assert branch.status_code == 403 and "quota" in branch.json()["error"], branch.text
    assert len(own_api.get("/api/v1/vm").json()) == 1
    boot(own_api)
    boot(own_api)
    fourth = own_api.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}})
    assert fourth.status_code == 403 and fourth.json() == {
        "error": "VM quota exceeded: 3 live VMs + 1 requested > 3 per user; delete VMs first", "success": False}
    for vm in own_api.get("/api/v1/vm").json():
        own_api.delete(f"/api/v1/vm/{vm['vm_id']}")


def test_one_users_slow_execs_do_not_starve_another_user(own_server: ServerProcess) -> None:
    with (Api(own_server.url, own_server.token("busy")) as busy,
          Api(own_server.url, own_server.token("other")) as other):
        vm_id = boot(busy)
        sleep = {"command": ["sleep", "8"]}
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            started = time.monotonic()
            futures = [pool.submit(busy.post, f"/api/v1/vm/{vm_id}/exec", json=sleep) for _ in range(40)]
            time.sleep(1.0)
            probes = []
            for _ in range(5):
                began = time.monotonic()
                assert other.get("/api/v1/env_vars").status_code == 200
                probes.append(time.monotonic() - began)
            answers = [future.result() for future in futures]
        statuses = sorted(response.status_code for response in answers)
        refused = [response for response in answers if response.status_code == 429]
        figure("vm starvation", execs_of_40_run=statuses.count(200), refused_429=len(refused),
               other_users_slowest_get_ms=round(max(probes) * 1000))
        assert statuses.count(200) == 4 and len(refused) == 36
        assert all(response.headers["Retry-After"] == "1" for response in refused)
        assert re.search(r"at most 4", refused[0].json()["error"])
        assert max(probes) < 2.0 < time.monotonic() - started  # the GETs ran while the execs still slept
        busy.delete(f"/api/v1/vm/{vm_id}")


def test_exec_without_a_timeout_is_bounded(api: Api) -> None:
    vm_id = boot(api)
    too_long = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["true"], "timeout_secs": 601})
    assert too_long.status_code == 400 and "timeout_secs" in too_long.json()["error"]
    flood = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["head", "-c", "30000000", "/dev/zero"]})
    assert flood.status_code == 413 and len(flood.content) < 1000
    api.delete(f"/api/v1/vm/{vm_id}")


def test_requests_to_a_killed_agent_fail_cleanly(api: Api) -> None:
    vm_id = boot(api)
    # The guest is root in its VM: it can kill its own agent. The server answers, and stays up.
    killed = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["sh", "-c", "kill -9 $PPID"]})
    assert killed.status_code in (200, 503)
    assert api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/etc/passwd"}).status_code == 503
    assert api.get("/api/v1/env_vars").status_code == 200
    assert api.delete(f"/api/v1/vm/{vm_id}").status_code == 200

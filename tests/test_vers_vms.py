"""The Vers VM lifecycle and the boot-time injection path, against a real server with real sandboxes."""

from __future__ import annotations

import base64
import time

import pytest

from envvars.envfile import parse, render
from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.figures import figure

TRICKY = {
    "SPACES": "  leading and trailing  ",
    "QUOTES": "it's \"quoted\"",
    "DOLLAR": "$HOME ${PATH} $(whoami) `id`",
    "HASH": "a # not a comment",
    "BACKSLASH": "C:\\path\\to\\n",
    "EQUALS": "a=b=c",
    "UNICODE": "ünïcødé ✓ 日本語 🚀",
    "EMPTY": "",
    "TABS": "a\tb",
    "LONG": "x" * 8192,
}


def boot(api: Api, wait: bool = True) -> str:
    response = api.post(f"/api/v1/vm/new_root?wait_boot={str(wait).lower()}", json={"vm_config": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["vm_id"])


def env_file(api: Api, vm_id: str) -> str:
    response = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"})
    assert response.status_code == 200, response.text
    return base64.b64decode(response.json()["content_b64"]).decode()


def run(api: Api, vm_id: str, *command: str, **extra: object) -> dict:
    response = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": list(command), **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def login_env(api: Api, vm_id: str) -> dict[str, str]:
    """The environment a command in the VM sees, read NUL-separated so any value survives."""
    result = run(api, vm_id, "sh", "-c", "cat /proc/self/environ | base64 -w0")
    pairs = base64.b64decode(result["stdout"]).decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if pair)


def test_new_root_injects_the_set_exactly(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": TRICKY})
    vm_id = boot(api)
    metadata = api.get(f"/api/v1/vm/{vm_id}/metadata").json()
    assert metadata["state"] == "running"
    assert env_file(api, vm_id) == render(TRICKY)
    assert parse(env_file(api, vm_id)) == TRICKY
    assert run(api, vm_id, "cat", "/etc/environment")["stdout"] == render(TRICKY)


def test_exec_sees_etc_environment_not_the_servers_env(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": TRICKY})
    vm_id = boot(api)
    seen = login_env(api, vm_id)
    # What a login in the VM sees (real pam_env): HASH ends at its `#`, LONG's line is too long to read.
    as_a_login = {key: value for key, value in TRICKY.items() if key != "LONG"} | {"HASH": "a "}
    assert {key: seen[key] for key in seen.keys() & TRICKY.keys()} == as_a_login
    assert not {"VIRTUAL_ENV", "PYTEST_CURRENT_TEST", "PULUMI_HOME"} & set(seen)
    assert set(seen) - set(TRICKY) <= {"PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "SHLVL", "_"}


def test_exec_env_overrides_and_exit_code(api: Api) -> None:
    vm_id = boot(api)
    result = run(api, vm_id, "sh", "-c", "echo $EXTRA; echo oops >&2; exit 3", env={"EXTRA": "given"})
    assert result["exit_code"] == 3
    assert result["stdout"] == "given\n"
    assert result["stderr"] == "oops\n"


def test_boot_without_wait_reports_running_after_injection(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1"}})
    vm_id = boot(api, wait=False)
    deadline = time.monotonic() + 30
    while api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "booting":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "running"
    assert parse(env_file(api, vm_id)) == {"A": "1"}


def test_running_vms_are_never_resynced_and_new_vms_get_the_new_set(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "old", "B": "kept"}})
    old_vm = boot(api)
    api.put("/api/v1/env_vars", json={"vars": {"A": "new", "C": "added"}})
    api.delete("/api/v1/env_vars/B")
    assert parse(env_file(api, old_vm)) == {"A": "old", "B": "kept"}
    new_vm = boot(api)
    assert parse(env_file(api, new_vm)) == {"A": "new", "C": "added"}
    branched = api.post(f"/api/v1/vm/{old_vm}/branch", params={"count": 2})
    assert branched.status_code == 201, branched.text
    children = [vm["vm_id"] for vm in branched.json()["vms"]]
    assert len(children) == 2
    for child in children:
        assert parse(env_file(api, child)) == {"A": "new", "C": "added"}
    assert parse(env_file(api, old_vm)) == {"A": "old", "B": "kept"}


def test_commits_keep_files_but_not_the_env_set(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "at-commit"}})
    vm_id = boot(api)
    kept = base64.b64encode(b"kept").decode()
    api.put(f"/api/v1/vm/{vm_id}/files", json={"path": "/root/data.txt", "content_b64": kept})
    committed = api.post(f"/api/v1/vm/{vm_id}/commit", json={"name": "snap"})
    assert committed.status_code == 201, committed.text
    commit_id = committed.json()["commit_id"]
    api.put("/api/v1/env_vars", json={"vars": {"A": "at-restore"}, "replace": True})
    restored = api.post("/api/v1/vm/from_commit", json={"commit_id": commit_id})
    assert restored.status_code == 201, restored.text
    new_vm = restored.json()["vm_id"]
    assert parse(env_file(api, new_vm)) == {"A": "at-restore"}
    assert run(api, new_vm, "cat", "/root/data.txt")["stdout"] == "kept"
    metadata = api.get(f"/api/v1/vm/{new_vm}/metadata").json()
    assert metadata["parent_commit_id"] == commit_id
    from_branch = api.post(f"/api/v1/vm/{commit_id}/branch").json()["vms"]
    assert parse(env_file(api, from_branch[0]["vm_id"])) == {"A": "at-restore"}
    assert api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "running"


def test_pause_and_resume(api: Api) -> None:
    vm_id = boot(api)
    assert api.patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Paused"}).status_code == 200
    assert api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "paused"
    paused = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["true"]})
    assert paused.status_code == 409
    assert paused.json() == {"error": f"VM '{vm_id}' is paused: set its state to Running first", "success": False}
    assert api.patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Running"}).status_code == 200
    assert run(api, vm_id, "true")["exit_code"] == 0
    bad = api.patch(f"/api/v1/vm/{vm_id}/state", json={"state": "Flying"})
    assert bad.status_code == 400
    assert bad.json()["success"] is False


def test_list_and_delete(api: Api) -> None:
    vm_id = boot(api)
    listed = api.get("/api/v1/vm").json()
    assert [vm["vm_id"] for vm in listed] == [vm_id]
    assert listed[0]["state"] == "running"
    deleted = api.delete(f"/api/v1/vm/{vm_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"vm_id": vm_id}
    assert api.get("/api/v1/vm").json() == []
    gone = api.get(f"/api/v1/vm/{vm_id}/metadata")
    assert gone.status_code == 404
    assert gone.json() == {"error": f"VM '{vm_id}' not found", "success": False}


@pytest.mark.parametrize(
    "path", ["/../../etc/passwd", "../etc/passwd", "etc/environment", "/root/../../../etc/shadow"]
)
def test_files_refuse_traversal(api: Api, path: str) -> None:
    vm_id = boot(api)
    read = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": path})
    assert read.status_code == 400, read.text
    assert read.json()["success"] is False
    write = api.put(f"/api/v1/vm/{vm_id}/files", json={"path": path, "content_b64": ""})
    assert write.status_code == 400, write.text


def test_files_refuse_symlinks_out_of_the_vm_root(api: Api) -> None:
    vm_id = boot(api)
    assert run(api, vm_id, "ln", "-s", "/usr/bin", "/root/out")["exit_code"] == 0
    read = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/root/out/env"})
    assert read.status_code == 400, read.text
    write = api.put(f"/api/v1/vm/{vm_id}/files", json={"path": "/root/out/x", "content_b64": ""})
    assert write.status_code == 400, write.text


def test_files_write_then_read_bytes(api: Api) -> None:
    vm_id = boot(api)
    payload = bytes(range(256))
    written = api.put(f"/api/v1/vm/{vm_id}/files", json={
        "path": "/srv/app/blob.bin", "content_b64": base64.b64encode(payload).decode(), "create_dirs": True,
        "mode": 0o600,
    })
    assert written.status_code == 200, written.text
    read = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/srv/app/blob.bin"})
    assert base64.b64decode(read.json()["content_b64"]) == payload
    assert run(api, vm_id, "stat", "-c", "%a", "/srv/app/blob.bin")["stdout"].strip() == "600"
    missing = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/nope"})
    assert missing.status_code == 404


def test_exec_is_confined_to_the_vm(api: Api) -> None:
    vm_id = boot(api)
    listing = run(api, vm_id, "ls", "/")["stdout"].split()
    assert "work" not in listing
    assert run(api, vm_id, "sh", "-c", "touch /usr/escape")["exit_code"] != 0
    assert run(api, vm_id, "sh", "-c", "ls /root | wc -l")["stdout"].strip() == "0"


def test_vms_are_private_to_their_owner(new_api) -> None:
    alice, bob = new_api(), new_api()
    vm_id = boot(alice)
    for method, path, body in [
        ("GET", f"/api/v1/vm/{vm_id}/metadata", None),
        ("PATCH", f"/api/v1/vm/{vm_id}/state", {"state": "Paused"}),
        ("POST", f"/api/v1/vm/{vm_id}/exec", {"command": ["true"]}),
        ("GET", f"/api/v1/vm/{vm_id}/files?path=/etc/environment", None),
        ("POST", f"/api/v1/vm/{vm_id}/commit", {}),
        ("POST", f"/api/v1/vm/{vm_id}/branch", None),
        ("DELETE", f"/api/v1/vm/{vm_id}", None),
    ]:
        response = bob.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert bob.get("/api/v1/vm").json() == []
    assert alice.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "running"


def test_vm_routes_need_a_token(anonymous: Api) -> None:
    for method, path in [("GET", "/api/v1/vm"), ("POST", "/api/v1/vm/new_root"), ("GET", "/api/v1/system/version"),
                         ("DELETE", "/api/v1/vm/x")]:
        response = anonymous.request(method, path)
        assert response.status_code == 401
        assert response.json()["success"] is False


def test_bad_vm_config_is_400(api: Api) -> None:
    response = api.post("/api/v1/vm/new_root", json={"vm_config": {"vcpu_count": "two"}})
    assert response.status_code == 400
    assert response.json() == {"error": "vm_config.vcpu_count: Input should be a valid integer", "success": False}


def test_version(api: Api) -> None:
    assert api.get("/api/v1/system/version").json()["executable_name"] == "orchestrator"


def injections(server: ServerProcess, vm_id: str) -> list[str]:
    """The WriteFile requests of /etc/environment the VM's guest agent served, as its log lines."""
    log = (server.data_dir / "vms" / vm_id / "agent.log").read_text(errors="replace")
    return [line for line in log.splitlines() if line.startswith("envvars-agent: WriteFile '/etc/environment'")]


def running_then_injections(api: Api, server: ServerProcess, vm_id: str) -> list[str]:
    """The injections seen the moment the API first reports the VM running."""
    deadline = time.monotonic() + 30
    while api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] != "running":
        assert time.monotonic() < deadline, "the VM never reached running"
        time.sleep(0.02)
    return injections(server, vm_id)


def test_every_creation_path_injects_once_before_running(api: Api, server: ServerProcess) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1"}})
    once = ["envvars-agent: WriteFile '/etc/environment' mode 644 -> ok"]
    created = {"new_root": boot(api), "new_root, no wait": boot(api, wait=False)}
    for path, vm_id in created.items():
        assert running_then_injections(api, server, vm_id) == once, path
    commit_id = api.post(f"/api/v1/vm/{created['new_root']}/commit").json()["commit_id"]
    restored = api.post("/api/v1/vm/from_commit", json={"commit_id": commit_id})
    assert restored.status_code == 201, restored.text
    created["from_commit"] = restored.json()["vm_id"]
    branched = api.post(f"/api/v1/vm/{created['new_root']}/branch", params={"count": 2}).json()["vms"]
    created |= {f"branch #{n}": vm["vm_id"] for n, vm in enumerate(branched)}
    for path in ("from_commit", "branch #0", "branch #1"):
        assert running_then_injections(api, server, created[path]) == once, path
    # Running VMs are never written again, whatever the set does; and the file is what was sent.
    api.put("/api/v1/env_vars", json={"vars": {"A": "2"}})
    run(api, created["new_root"], "true")
    for path, vm_id in created.items():
        assert injections(server, vm_id) == once, path
        assert run(api, vm_id, "stat", "-c", "%a %U", "/etc/environment")["stdout"].strip() == "644 root"
    figure("boot injection", creation_paths=len(created), writes_of_etc_environment_each=1)

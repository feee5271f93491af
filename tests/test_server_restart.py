"""VM states after a server restart on the same data dir (README, "VMs and the boot-time injection path").

"After a restart on the same data dir, users, tokens, variables and VM records are kept; VMs that
were `running` boot again from their kept root filesystem (not re-injected), `paused`/`sleeping`
VMs boot and pause again, and VMs that were still `booting` are `dead`."

Each test runs servers of its own on one temp data dir: the first is stopped (kill -9 as a crash
would, or its normal SIGTERM stop), a second is started on the same dir. What is checked is what a
user sees through the API, plus each VM's guest-agent log (one line per request it served, appended
across boots), which shows whether `/etc/environment` was written again.
"""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from envvars.envfile import parse
from envvars_provider.protos import provider_pb2
from envvars_provider.values import to_struct
from envvars_server.launch import ServerProcess
from envvars_server.sandbox.protocol import AgentClient, AgentUnavailable
from tests.conftest import Api
from tests.figures import figure
from tests.plugin import Plugin, plain, urn
from tests.test_vers_vms import boot, env_file, injections, run

ONCE = ["envvars-agent: WriteFile '/etc/environment' mode 644 -> ok"]
AT_BOOT = {"A": "first", "B": "kept"}
LATER = {"A": "second", "C": "added after the boot"}


class Servers:
    """The servers of one test, all on one data dir; each logs to a file of its own; all stopped at the end."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.started: list[tuple[ServerProcess, IO[str]]] = []

    def start(self) -> ServerProcess:
        log = (self.tmp_path / f"server-{len(self.started)}.log").open("w")
        server = ServerProcess(self.data_dir, log=log)
        self.started.append((server, log))
        return server.start()

    def restart(self, server: ServerProcess, how: str) -> ServerProcess:
        """Stop `server` (`kill -9` or `stop`), then start a new one on the same data dir."""
        if how == "kill -9":
            server.kill()
        else:
            server.stop()
        return self.start()

    def close(self) -> None:
        for server, log in self.started:
            server.stop()
            log.close()


@pytest.fixture
def servers(isolation: None, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(tmp_path)
    yield made
    made.close()


def agent_log(server: ServerProcess, vm_id: str) -> bytes:
    return (server.data_dir / "vms" / vm_id / "agent.log").read_bytes()


def agent_answers(server: ServerProcess, vm_id: str) -> bool:
    """Whether the VM's guest agent answers a Ping on its vsock socket within a second (a frozen one cannot)."""
    try:
        AgentClient(server.data_dir / "vms" / vm_id / "vsock.sock", timeout=1.0).ping(timeout=1.0)
    except AgentUnavailable:
        return False
    return True


def state(api: Api, vm_id: str) -> str:
    response = api.get(f"/api/v1/vm/{vm_id}/metadata")
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


def write_note(api: Api, vm_id: str, text: str) -> None:
    written = api.put(f"/api/v1/vm/{vm_id}/files", json={
        "path": "/root/note.txt", "content_b64": base64.b64encode(text.encode()).decode()})
    assert written.status_code == 200, written.text


def recorded_states(data_dir: Path) -> dict[str, str]:
    """The VM states in the SQLite file of a server that is not running (read-only)."""
    db = sqlite3.connect(f"file:{data_dir / 'envvars.db'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT id, state FROM machines WHERE platform = 'vers'").fetchall())
    finally:
        db.close()


@pytest.mark.parametrize("how", ["kill -9", "stop"])
def test_vms_come_back_in_their_state_from_their_own_disk_without_reinjection(servers: Servers, how: str) -> None:
    server = servers.start()
    alice_token, bob_token = server.token("alice"), server.token("bob")
    alice, bob = Api(server.url, alice_token), Api(server.url, bob_token)
    alice.put("/api/v1/env_vars", json={"vars": AT_BOOT}).raise_for_status()
    bob.put("/api/v1/env_vars", json={"vars": {"BOB": "only bob's"}}).raise_for_status()
    vms = {"running": boot(alice), "paused": boot(alice), "sleeping": boot(alice)}
    for name, vm_id in vms.items():
        write_note(alice, vm_id, f"written in the {name} VM")
        assert injections(server, vm_id) == ONCE, name
    for name in ("paused", "sleeping"):
        patched = alice.patch(f"/api/v1/vm/{vms[name]}/state", json={"state": name.capitalize()})
        assert patched.status_code == 200, patched.text
    # The set changes after the boots: running VMs must keep what they were given at their first boot.
    alice.put("/api/v1/env_vars", json={"vars": LATER, "replace": True}).raise_for_status()
    log_before = {name: len(agent_log(server, vm_id)) for name, vm_id in vms.items()}
    old_url = server.url

    started = time.monotonic()
    server = servers.restart(server, how)
    restart_s = time.monotonic() - started
    assert server.url != old_url  # a new process (a new port), on the same data dir
    alice, bob = Api(server.url, alice_token), Api(server.url, bob_token)

    # Users, tokens and variables are kept.
    assert alice.get("/api/v1/env_vars").json() == {"vars": LATER}
    assert bob.get("/api/v1/env_vars").json() == {"vars": {"BOB": "only bob's"}}
    assert bob.get("/api/v1/vm").json() == []
    assert {vm["vm_id"] for vm in alice.get("/api/v1/vm").json()} == set(vms.values())

    # Each VM is back in the state it had; paused and sleeping ones really frozen, not just so recorded.
    assert {name: state(alice, vm_id) for name, vm_id in vms.items()} == {name: name for name in vms}
    assert agent_answers(server, vms["running"])
    for name in ("paused", "sleeping"):
        refused = alice.post(f"/api/v1/vm/{vms[name]}/exec", json={"command": ["true"]})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == f"VM '{vms[name]}' is {name}: set its state to Running first"
        assert not agent_answers(server, vms[name]), f"the {name} VM's agent answers: it is not frozen"
        resumed = alice.patch(f"/api/v1/vm/{vms[name]}/state", json={"state": "Running"})
        assert resumed.status_code == 200, resumed.text
        assert state(alice, vms[name]) == "running"

    # Every VM booted again from its own disk: the file written in it is there, and /etc/environment
    # is the one injected at its first boot, not the account's set of now.
    for name, vm_id in vms.items():
        assert run(alice, vm_id, "cat", "/root/note.txt")["stdout"] == f"written in the {name} VM", name
        assert parse(env_file(alice, vm_id)) == AT_BOOT, name
        assert run(alice, vm_id, "sh", "-c", 'printf %s "$A|${C-unset}"')["stdout"] == "first|unset", name
        # The agent log goes on across the restart (the reads above are in it), with no new injection.
        since_restart = agent_log(server, vm_id)[log_before[name]:].decode(errors="replace")
        assert "envvars-agent: ReadFile '/etc/environment' -> ok" in since_restart, name
        assert "WriteFile '/etc/environment'" not in since_restart, (name, since_restart)
        assert injections(server, vm_id) == ONCE, name

    # A VM booted after the restart gets the account's set of now, injected once: injection still works.
    fresh = boot(alice)
    assert parse(env_file(alice, fresh)) == LATER
    assert injections(server, fresh) == ONCE
    figure(f"server restart ({how})", vms_back_in_their_state=f"{len(vms)} of {len(vms)}",
           reinjections_after_restart=0, restart_until_answering=f"{restart_s:.1f} s")


def test_a_vm_still_booting_at_a_kill_is_dead_after_the_restart(servers: Servers, tmp_path: Path) -> None:
    server = servers.start()
    token = server.token("carol")
    api = Api(server.url, token)
    api.put("/api/v1/env_vars", json={"vars": AT_BOOT}).raise_for_status()
    settled = boot(api)
    # To catch VMs booting: several `new_root?wait_boot=false` at once (the 201 comes back as soon as
    # the record says `booting`; the boots then make disks and start sandboxes one after another,
    # ~40-120 ms each), and kill -9 as soon as the last answer is in. Which VMs were still booting
    # at the kill is then read from the dead server's SQLite file, so the test never guesses: it
    # needs at least one, and checks every VM against what its record held at the kill.
    burst = [boot(api, wait=False) for _ in range(4)]
    server.kill()
    at_kill = recorded_states(server.data_dir)
    booting = [vm_id for vm_id in burst if at_kill[vm_id] == "booting"]
    assert booting, f"every VM of the burst finished booting before the kill: {at_kill}"
    assert at_kill[settled] == "running"

    server = servers.restart(server, "kill -9")  # already dead: this only starts the new one
    api = Api(server.url, token)
    assert api.get("/api/v1/env_vars").json() == {"vars": AT_BOOT}
    after = {vm_id: state(api, vm_id) for vm_id in [settled, *burst]}
    expected = {vm_id: "dead" if at_kill[vm_id] == "booting" else "running" for vm_id in [settled, *burst]}
    assert after == expected
    vm_type = "envvars:vers:Vm"
    # The provider: a dead VM is refreshed as dead (not gone, which would orphan it) and replaced.
    plugin = Plugin(tmp_path / "plugin.stderr")
    plugin.configure(server.url, token)
    try:
        vm_urn = urn(vm_type, "w")
        was = to_struct({"vmId": booting[0], "state": "running", "ip": ""})
        read = plugin.stub.Read(provider_pb2.ReadRequest(id=booting[0], urn=vm_urn, type=vm_type, properties=was))
        assert read.id == booting[0] and plain(read.properties)["state"] == "dead"
        replaced = plugin.stub.Diff(provider_pb2.DiffRequest(
            id=booting[0], urn=vm_urn, type=vm_type, olds=read.properties, news=to_struct({})))
        assert list(replaced.replaces) == ["state"]
    finally:
        plugin.close()
    for vm_id in booting:
        refused = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["true"]})
        assert refused.status_code == 409, refused.text
        assert refused.json() == {"error": f"VM '{vm_id}' is not running", "success": False}
        # A dead VM can still be deleted, and is then gone.
        assert api.delete(f"/api/v1/vm/{vm_id}").status_code == 200
        assert api.get(f"/api/v1/vm/{vm_id}/metadata").status_code == 404
    assert parse(env_file(api, settled)) == AT_BOOT
    assert injections(server, settled) == ONCE
    figure("server restart (kill -9 during boots)", vms_booting_at_the_kill=f"{len(booting)} of {len(burst)}",
           dead_after_the_restart=sum(state == "dead" for state in after.values()))

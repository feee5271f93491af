"""Through the real Pulumi CLI: every `Vm` input replaces the VM, an update that fails part-way is
finished by the next `up`, and keys deleted out of band are put back (README, "The Pulumi provider").

Uses the config-shaped program of tests/test_cli.py. What is asserted is what a user sees: the
preview's steps and detailed diffs, the up's error, the stack's state, and what the server holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envvars_provider.clients.http import retry_policy
from envvars_server.launch import ServerProcess
from envvars_server.sandbox.host import host
from tests.conftest import Api, arm, injected
from tests.figures import figure
from tests.test_cli import (
    STACK,
    Workspace,
    configure,
    live_vms,
    preview_json,
    refresh_preview,
    resources,
    stored,
    vm_env,
    workspace,
)

pytestmark = pytest.mark.slow


def shown(value: Any) -> Any:
    """A state value from `stack export --show-secrets`: a secret's plaintext is JSON-encoded."""
    return json.loads(value["plaintext"]) if isinstance(value, dict) and "plaintext" in value else value


def state_outputs(ws: Workspace) -> dict[str, dict[str, Any]]:
    """Each custom resource's outputs in the state, secrets shown, by name (provider excluded)."""
    deployment = json.loads(ws.run("stack", "export", "--show-secrets").stdout)["deployment"]
    return {r["urn"].rsplit("::", 1)[-1]: {key: shown(value) for key, value in (r.get("outputs") or {}).items()}
            for r in deployment.get("resources", [])
            if r["custom"] and not r["type"].startswith("pulumi:providers:")}


def disk_size_mib(api: Api, vm_id: str) -> int:
    """The size of the VM's root file system as `df` inside the VM reports it, in MiB."""
    result = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["df", "-m", "--output=size", "/"]})
    assert result.status_code == 200 and result.json()["exit_code"] == 0, result.text
    return int(result.json()["stdout"].split()[-1])


def no_changes(count: int) -> tuple[dict[str, tuple[str, dict[str, str]]], dict[str, int]]:
    """A preview of `count` resources (the stack included) with nothing to do."""
    return {STACK: ("same", {})}, {"same": count}


# -- 1. Every Vm input replaces the VM ---------------------------------------------------------------

# Each step adds one input to the VM's spec; the preview must replace the VM for that input alone.
VM_STEPS: list[tuple[str, Any, dict[str, str]]] = [
    ("vcpu_count", 2, {"vcpuCount": "update-replace"}),
    ("mem_size_mib", 256, {"memSizeMib": "update-replace"}),
    ("fs_size_mib", 512, {"fsSizeMib": "update-replace"}),
    ("labels", {"team": "a"}, {'labels["team"]': "add-replace"}),
    ("labels", {"team": "b"}, {'labels["team"]': "update-replace"}),
]


def test_every_vm_input_replaces_the_vm(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    spec: dict[str, Any] = {}
    configure(ws, vms={"w": spec})
    ws.up()
    vm_id = ws.outputs()["vmIds"]["w"]
    replaced = []
    for name, value, detailed in VM_STEPS:
        spec = {**spec, name: value}
        configure(ws, vms={"w": spec})
        assert preview_json(ws) == ({STACK: ("same", {}), "w": ("replace", detailed)},
                                    {"same": 1, "replace": 1}), name
        ws.up()
        new_id = ws.outputs()["vmIds"]["w"]
        assert new_id != vm_id, f"{name}: the VM was not replaced"
        assert live_vms(api) == {new_id}, name
        assert api.get(f"/api/v1/vm/{vm_id}/metadata").status_code == 404, f"{name}: the old VM is still there"
        # The new VM has the new input (metadata has no disk size or labels: the disk is measured
        # inside the VM where disks are images of their size, labels are in the VM list).
        metadata = api.get(f"/api/v1/vm/{new_id}/metadata").json()
        assert (metadata["state"], metadata["vcpu_count"], metadata["mem_size_mib"]) == (
            "running", spec.get("vcpu_count", 1), spec.get("mem_size_mib", 512)), name
        labels = {vm["vm_id"]: vm.get("labels") or {} for vm in api.get("/api/v1/vm").json()}[new_id]
        assert labels.get("team") == spec.get("labels", {}).get("team"), name
        if host().images:
            disk_mib = disk_size_mib(api, new_id)
            assert 0.8 * spec.get("fs_size_mib", 1024) < disk_mib <= spec.get("fs_size_mib", 1024), (name, disk_mib)
        assert resources(ws)["w"]["outputs"]["vmId"] == new_id
        replaced.append(vm_id)
        vm_id = new_id
    assert preview_json(ws) == no_changes(2)
    figure("cli: every Vm input replaces", inputs_changed=len(VM_STEPS), vms_replaced=len(replaced),
           old_vms_left=len(live_vms(api) & set(replaced)))
    ws.destroy()
    assert live_vms(api) == set()


# -- 2. An update that fails part-way, then the next up finishes it ----------------------------------

FAILING_KEY = "Z_FAILS"  # removed by the update; every DELETE of it answers 500 while the fault is armed


def test_an_update_that_fails_part_way_is_finished_by_the_next_up(tmp_path: Path, faulty_server: ServerProcess) -> None:
    api = Api(faulty_server.url, faulty_server.token("partial-update"))
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "not ours"}, "replace": False}).raise_for_status()
    ws = workspace(tmp_path, faulty_server, api)
    configure(ws, sets={"app": {"vars": {"A_GONE": "a", "KEEP": "v1", FAILING_KEY: "z"}}})
    ws.up()
    assert ws.outputs()["revisions"] == {"app": 1}

    # The update changes KEEP, adds NEW and removes A_GONE and Z_FAILS (deleted in key order, so
    # A_GONE goes first); every DELETE of Z_FAILS answers 500, through all of the provider's retries.
    wanted = {"KEEP": "v2", "NEW": "n"}
    configure(ws, sets={"app": {"vars": wanted}})
    before = injected(faulty_server)
    arm(faulty_server, {"kind": "status", "status": 500, "count": 1000, "methods": ["DELETE"],
                        "path_prefix": f"/api/v1/env_vars/{FAILING_KEY}"})
    try:
        failed = ws.up(check=False)
    finally:
        arm(faulty_server)
    attempts = injected(faulty_server) - before
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "Traceback" not in output
    assert f"removing key '{FAILING_KEY}' failed: DELETE /api/v1/env_vars/{FAILING_KEY} failed with HTTP 500" \
        in output, output[-3000:]
    assert attempts == retry_policy().total + 1, "the DELETE was not retried as the provider's policy says"

    # What was reached: the upsert and the other removal are applied, on the server and in the state.
    assert stored(api) == {"OTHER": "not ours", **wanted, FAILING_KEY: "z"}
    reached = state_outputs(ws)["app"]
    assert reached["vars"] == {**wanted, FAILING_KEY: "z"}
    assert reached["revision"] == 2
    # So the next preview has exactly what is left to do.
    assert preview_json(ws) == ({STACK: ("same", {}), "app": ("update", {f'vars["{FAILING_KEY}"]': "delete"})},
                                {"same": 1, "update": 1})

    # Faults off: the next up finishes it, and then there is nothing left to do.
    ws.up()
    assert stored(api) == {"OTHER": "not ours", **wanted}
    assert state_outputs(ws)["app"]["vars"] == wanted
    assert preview_json(ws) == no_changes(2)
    figure("cli: update failing part-way", delete_attempts_answered_500=attempts,
           applied_before_the_failure="1 upsert + 1 delete", left_after_the_next_up=0)
    ws.destroy()
    assert stored(api) == {"OTHER": "not ours"}


# -- 3. Keys deleted out of band --------------------------------------------------------------------

def test_keys_deleted_out_of_band_are_refreshed_away_then_written_again(
        tmp_path: Path, server: ServerProcess, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "not ours"}, "replace": False}).raise_for_status()
    ws = workspace(tmp_path, server, api)
    group = {"G1": "g1", "G2": "g2"}
    configure(ws, sets={"grp": {"vars": group}}, vars={"one": {"key": "ONE", "value": "1"}}, vms={"w": "grp"})
    ws.up()
    first_vm = ws.outputs()["vmIds"]["w"]
    assert ws.outputs()["revisions"] == {"grp": 1}
    assert stored(api) == {"OTHER": "not ours", **group, "ONE": "1"}

    for key in ("ONE", *group):
        assert api.delete(f"/api/v1/env_vars/{key}").status_code == 204
    assert stored(api) == {"OTHER": "not ours"}

    # The refresh preview: the EnvVar is gone, the set loses both keys, the VM is untouched.
    drift, counts = refresh_preview(ws)
    assert drift["one"][0] == "delete", drift
    assert drift["grp"] == ("update", {'vars["G1"]': "delete", 'vars["G2"]': "delete"}), drift
    assert drift["w"] == ("refresh", {}), drift
    assert counts == {"same": 2, "update": 1, "delete": 1}, drift

    ws.run("refresh", "--yes")
    state = state_outputs(ws)
    assert "one" not in state
    assert state["grp"]["vars"] == {} and state["grp"]["revision"] == 2
    assert state["w"]["vmId"] == first_vm

    # The next up: the EnvVar created again, the set written again as an update with the next revision,
    # and the VM fed that revision replaced.
    assert preview_json(ws) == ({
        STACK: ("same", {}),
        "one": ("create", {}),
        "grp": ("update", {'vars["G1"]': "add", 'vars["G2"]': "add"}),
        "w": ("replace", {"envRevision": "update-replace"}),
    }, {"same": 1, "create": 1, "update": 1, "replace": 1})
    ws.up()
    assert stored(api) == {"OTHER": "not ours", **group, "ONE": "1"}
    assert ws.outputs()["revisions"] == {"grp": 3}
    new_vm = ws.outputs()["vmIds"]["w"]
    assert new_vm != first_vm and live_vms(api) == {new_vm}
    seen = vm_env(api, new_vm)
    assert seen.pop("ONE", "1") == "1"  # the EnvVar may or may not be written before the VM boots
    assert seen == {"OTHER": "not ours", **group}
    state = state_outputs(ws)
    assert state["one"]["value"] == "1" and state["grp"]["vars"] == group
    assert preview_json(ws) == no_changes(4)
    ws.destroy()
    assert stored(api) == {"OTHER": "not ours"}

"""The provider through the real Pulumi CLI, against the bundled server: one program shaped by config.

Each test is a fresh user (its own token and env set) on the shared server, with its own Pulumi
home and file backend. Ups skip their preview where the preview is not under test.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envvars.envfile import parse
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parent / "programs" / "vers"
STACK = "envvars-cli-test-dev"
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
# The pinned engine's own -v=9 trace of every property it (un)marshals: it logs the elements of a
# secret wrapper before it recognises the wrapper (sdk/go/common/resource/plugin/rpc.go), so these
# lines carry secrets whatever a provider does. Only they are exempt from the leak check.
ENGINE_PROPERTY_TRACE = re.compile(r'"msg":"(Unm|M)arshaling property for RPC\[')


def workspace(tmp_path: Path, server: ServerProcess, api: Api, name: str = "ws") -> Workspace:
    """The test program for `api`'s user, in its own directory, Pulumi home and backend."""
    (tmp_path / name).mkdir()
    return Workspace(tmp_path / name, PROGRAM, server.url, token(api))


def token(api: Api) -> str:
    return str(api.headers["Authorization"]).split()[1]


def configure(ws: Workspace, **objects: Any) -> None:
    """Set the program's `sets` / `vars` / `vms` config."""
    for key, value in objects.items():
        ws.set_config(key, json.dumps(value))


Plan = tuple[dict[str, tuple[str, dict[str, str]]], dict[str, int]]


def plan(result: subprocess.CompletedProcess[str]) -> Plan:
    """A `--json` preview's listed steps (the stack, the changes) as {name: (op, {path: kind})}, and its counts."""
    preview = json.loads(result.stdout)
    steps = {step["urn"].rsplit("::", 1)[-1]: (step["op"], {path: diff["kind"] for path, diff in
                                                            (step.get("detailedDiff") or {}).items()})
             for step in preview["steps"]}
    return steps, preview["changeSummary"]


def preview_json(ws: Workspace) -> Plan:
    return plan(ws.run("preview", "--json"))


def refresh_preview(ws: Workspace) -> Plan:
    """`pulumi refresh --preview-only --json` (the workspace's auto-confirm would refuse it)."""
    return plan(ws.run("refresh", "--preview-only", "--json", extra_env={"PULUMI_SKIP_CONFIRMATIONS": "false"}))


def stored(api: Api) -> dict[str, str]:
    response = api.get("/api/v1/env_vars")
    assert response.status_code == 200, response.text
    return dict(response.json()["vars"])


def live_vms(api: Api) -> set[str]:
    return {vm["vm_id"] for vm in api.get("/api/v1/vm").json()}


def vm_env(api: Api, vm_id: str) -> dict[str, str]:
    """What the VM sees in its /etc/environment."""
    response = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"})
    assert response.status_code == 200, response.text
    return parse(base64.b64decode(response.json()["content_b64"]).decode())


def resources(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The state's custom resources by name (provider excluded)."""
    deployment = json.loads(ws.export())["deployment"]
    return {r["urn"].rsplit("::", 1)[-1]: r for r in deployment.get("resources", [])
            if r["custom"] and not r["type"].startswith("pulumi:providers:")}


def is_encrypted(value: Any) -> bool:
    """Whether a state property is a secret, stored as ciphertext."""
    return isinstance(value, dict) and value.items() >= SECRET_SIG.items() and "ciphertext" in value


def plaintext_in_state(tmp_path: Path, values: list[str]) -> list[str]:
    """The values found in any file of any backend under tmp_path (checkpoints, backups, history)."""
    found = set()
    for path in tmp_path.rglob("state/**/*"):
        if path.is_file():
            data = path.read_bytes()
            found |= {value for value in values if value.encode() in data}
    return sorted(found)


def distinctive(label: str) -> str:
    return f"{label}-{uuid.uuid4()}"


def test_lifecycle_of_a_set_an_env_var_and_vms(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    password, plain, single = distinctive("s3cr3t"), distinctive("pl41n"), distinctive("s1ngle")
    unmanaged = {"OTHER": distinctive("unmanaged")}
    api.put("/api/v1/env_vars", json={"vars": unmanaged, "replace": False}).raise_for_status()
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN_VALUE": plain, "SINGLE_VALUE": single}
    ws.set_config("dbPassword", password, secret=True)
    app = {"GREETING": "hello", "APP_ENV": "prod", "DB_PASSWORD": {"secret": "dbPassword"},
           "PLAIN": {"env": "PLAIN_VALUE"}}
    configure(ws, sets={"app": {"vars": app}}, vms={"w0": "app", "w1": "app"},
              vars={"single": {"key": "SINGLE", "value": {"env": "SINGLE_VALUE"}}})
    managed = {"GREETING": "hello", "APP_ENV": "prod", "DB_PASSWORD": password, "PLAIN": plain}

    # 1. up creates; each VM booted with the whole account set; a second preview changes nothing.
    ws.up()
    assert stored(api) == {**unmanaged, **managed, "SINGLE": single}
    first_vms = ws.outputs()["vmIds"]
    assert live_vms(api) == set(first_vms.values()) and len(first_vms) == 2
    for vm_id in first_vms.values():
        assert api.get(f"/api/v1/vm/{vm_id}/metadata").json()["state"] == "running"
        seen = vm_env(api, vm_id)
        assert seen.pop("SINGLE", single) == single  # the EnvVar may or may not be set before the VM boots
        assert seen == {**unmanaged, **managed}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 5})

    # 2. One value changed: one key updated in place, the VMs replaced, nothing else.
    configure(ws, sets={"app": {"vars": {**app, "GREETING": "bye"}}})
    assert preview_json(ws) == ({
        STACK: ("same", {}),
        "app": ("update", {'vars["GREETING"]': "update"}),
        "w0": ("replace", {"envRevision": "update-replace"}),
        "w1": ("replace", {"envRevision": "update-replace"}),
    }, {"same": 2, "update": 1, "replace": 2})
    verbose = ws.up("-v=9", "--logtostderr")
    second_vms = ws.outputs()["vmIds"]
    assert not set(second_vms.values()) & set(first_vms.values())
    assert live_vms(api) == set(second_vms.values())
    assert stored(api) == {**unmanaged, **managed, "GREETING": "bye", "SINGLE": single}
    for vm_id in second_vms.values():
        assert vm_env(api, vm_id) == stored(api)

    # 6. No secret, nor the token, in that -v=9 run's output, but in the engine's own property trace.
    leaked = [line for line in (verbose.stdout + verbose.stderr).splitlines()
              if any(value in line for value in (password, plain, single, token(api)))]
    assert leaked, "the engine's trace no longer shows secrets: drop the ENGINE_PROPERTY_TRACE exemption"
    assert [line for line in leaked if not ENGINE_PROPERTY_TRACE.search(line)] == []

    # 3. Out of band: a value changed, a managed key removed, an EnvVar deleted, a key added.
    api.put("/api/v1/env_vars", json={"vars": {"GREETING": "oob", "EXTRA": "added"}, "replace": False}
            ).raise_for_status()
    for key in ("APP_ENV", "SINGLE"):
        assert api.delete(f"/api/v1/env_vars/{key}").status_code == 204
    drift, counts = refresh_preview(ws)
    assert drift["app"] == ("update", {'vars["GREETING"]': "update", 'vars["APP_ENV"]': "delete"})
    assert drift["single"][0] == "delete"
    assert counts == {"same": 3, "update": 1, "delete": 1}, drift

    # 10. `up --refresh` puts the program's values back and recreates what was deleted.
    ws.up("--refresh")
    assert stored(api) == {**unmanaged, **managed, "GREETING": "bye", "SINGLE": single, "EXTRA": "added"}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 5})

    # 6. Secrets, and plain program strings, are ciphertext in state; no plaintext in any state file.
    state = resources(ws)
    assert is_encrypted(state["app"]["inputs"]["vars"]) and is_encrypted(state["app"]["outputs"]["vars"])
    assert is_encrypted(state["single"]["inputs"]["value"]) and is_encrypted(state["single"]["outputs"]["value"])
    assert plaintext_in_state(tmp_path, [password, plain, single, token(api)]) == []

    # 5. destroy (non-exclusive) removes only the managed keys, and the VMs.
    ws.destroy()
    assert stored(api) == {**unmanaged, "EXTRA": "added"}
    assert live_vms(api) == set()


def test_import_a_key_and_the_exclusive_set(tmp_path: Path, server: ServerProcess, new_api: Callable[[], Api]) -> None:
    secret_value = distinctive("s3cr3t")

    # 4. A key, and a set of chosen keys: imported, secret in state, matching the program; destroy
    # leaves the other keys.
    api = new_api()
    api.put("/api/v1/env_vars", json={"vars": {"K1": secret_value, "K2": "v2", "K3": "v3", "OTHER": "kept"},
                                      "replace": False}).raise_for_status()
    ws = workspace(tmp_path, server, api, "keys")
    (ws.dir / "import.json").write_text(json.dumps({"resources": [
        {"type": "envvars:vers:EnvVar", "name": "one", "id": "K1"},
        {"type": "envvars:vers:EnvVars", "name": "some", "id": "K2,K3"}]}))
    ws.run("import", "--file", "import.json", "--yes", "--protect=false", "--generate-code=false")
    state = resources(ws)
    assert (state["one"]["id"], state["one"]["inputs"]["key"]) == ("K1", "K1")
    assert is_encrypted(state["one"]["inputs"]["value"]) and is_encrypted(state["one"]["outputs"]["value"])
    assert (state["some"]["id"], state["some"]["inputs"]["exclusive"]) == ("K2,K3", False)
    assert is_encrypted(state["some"]["inputs"]["vars"]) and is_encrypted(state["some"]["outputs"]["vars"])
    ws.set_config("k1", secret_value, secret=True)
    configure(ws, vars={"one": {"key": "K1", "value": {"secret": "k1"}}},
              sets={"some": {"vars": {"K2": "v2", "K3": "v3"}}})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})
    ws.destroy()
    assert stored(api) == {"OTHER": "kept"}

    # 4. The whole set: imported as exclusive, secret in state, matching the program.
    api = new_api()
    api.put("/api/v1/env_vars", json={"vars": {"K1": secret_value, "K2": "v2"}, "replace": False}
            ).raise_for_status()
    ws = workspace(tmp_path, server, api, "set")
    ws.run("import", "envvars:vers:EnvVars", "all", "account", "--yes", "--protect=false", "--generate-code=false")
    imported = resources(ws)["all"]
    assert imported["id"] == "account" and imported["inputs"]["exclusive"] is True
    assert is_encrypted(imported["inputs"]["vars"]) and is_encrypted(imported["outputs"]["vars"])
    ws.set_config("k1", secret_value, secret=True)
    configure(ws, sets={"all": {"vars": {"K1": {"secret": "k1"}, "K2": "v2"}, "exclusive": True}})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})

    # Exclusive: unlisted keys go on update, out-of-band additions are drift, destroy empties the set.
    configure(ws, sets={"all": {"vars": {"K1": {"secret": "k1"}, "K3": "v3"}, "exclusive": True}})
    assert preview_json(ws)[0]["all"] == ("update", {'vars["K2"]': "delete", 'vars["K3"]': "add"})
    ws.up()
    assert stored(api) == {"K1": secret_value, "K3": "v3"}
    api.put("/api/v1/env_vars", json={"vars": {"EXTRA": "x"}, "replace": False}).raise_for_status()
    assert refresh_preview(ws)[0]["all"] == ("update", {'vars["EXTRA"]': "add"})
    ws.destroy()
    assert stored(api) == {}
    assert plaintext_in_state(tmp_path, [secret_value]) == []


def failed_preview(ws: Workspace) -> str:
    """The output of a `pulumi preview` that must fail."""
    result = ws.preview(check=False)
    assert result.returncode != 0, result.stdout
    return result.stdout + result.stderr


def test_bad_input_fails_at_preview_and_writes_nothing(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    secret_value, plain = distinctive("s3cr3t"), distinctive("pl41n")
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN": plain, "MULTILINE": f"{plain}\nsecond line"}
    ws.set_config("pw", secret_value, secret=True)

    # 7. A bad key, a bad value: the resource, the key and the rule; never a value.
    configure(ws, sets={"app": {"vars": {"1BAD": {"secret": "pw"}, "OK": {"env": "MULTILINE"}}}})
    output = failed_preview(ws)
    assert ("envvars:vers:EnvVars resource 'app' has a problem: env var key '1BAD' is invalid: "
            "keys must match ^[A-Za-z_][A-Za-z0-9_]*$") in output
    assert secret_value not in output and plain not in output
    configure(ws, sets={}, vars={"multi": {"key": "MULTI", "value": {"env": "MULTILINE"}}})
    output = failed_preview(ws)
    assert ("envvars:vers:EnvVar resource 'multi' has a problem: value of env var 'MULTI' contains a newline, "
            "which /etc/environment cannot represent (one variable per line)") in output
    assert plain not in output

    # 8. Two resources managing one key; an exclusive set beside another resource of the account.
    configure(ws, sets={"app": {"vars": {"SHARED": {"secret": "pw"}}}},
              vars={"one": {"key": "SHARED", "value": {"env": "PLAIN"}}})
    output = failed_preview(ws)
    clash = re.search(r"resource '(app|one)' has a problem: key 'SHARED' is also managed by '(app|one)': "
                      r"manage each key in exactly one resource", output)
    assert clash and {clash[1], clash[2]} == {"app", "one"}, output
    assert secret_value not in output and plain not in output
    configure(ws, sets={"app": {"vars": {"A": "1"}, "exclusive": True}})
    assert re.search(r"resource '(app|one)' has a problem: (this resource|'app') is exclusive \(owns the "
                     r"account's whole set\) but 'one' manages variables of the same account", failed_preview(ws))

    assert stored(api) == {}
    assert live_vms(api) == set()


def test_preview_with_unknown_inputs(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    # 9. An EnvVar whose value is a new VM's ip: unknown at the first preview.
    ws = workspace(tmp_path, server, api)
    configure(ws, vms={"w0": None}, vars={"ip": {"key": "VM_IP", "value": {"vmIp": "w0"}}})
    assert preview_json(ws) == ({STACK: ("create", {}), "w0": ("create", {}), "ip": ("create", {})}, {"create": 3})
    assert stored(api) == {} and live_vms(api) == set()
    ws.up()
    vm_id = ws.outputs()["vmIds"]["w0"]
    ip = api.get(f"/api/v1/vm/{vm_id}/metadata").json()["ip"]
    assert ip and stored(api) == {"VM_IP": ip}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})


def test_provider_url_is_checked_at_preview(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    configure(ws, vars={"one": {"key": "ONE", "value": "1"}})
    # Plain http to another machine: a warning, and the preview goes on (`.invalid` never resolves:
    # a preview of new resources sends nothing, and nothing could be reached anyway).
    result = ws.preview(extra_env={"VERS_URL": "http://envvars.invalid:8080"})
    assert re.search(r"warning: .*VERS_URL.*plain http", result.stdout + result.stderr, re.IGNORECASE), result.stdout
    # A password in the URL: the preview fails, naming the rule, never echoing the password.
    failed = ws.preview(check=False, extra_env={"VERS_URL": "https://user:hunter2-pw@envvars.invalid"})
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "credentials" in output and "hunter2-pw" not in output
    failed = ws.preview(check=False, extra_env={"VERS_URL": "http://[::1"})
    assert failed.returncode != 0 and "malformed host" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    # The same rules for the stack setting, which the message names.
    ws.set_config("envvars:versUrl", "ftp://envvars.invalid")
    failed = ws.preview(check=False)
    assert failed.returncode != 0
    assert ("envvars:versUrl must be an http(s) URL such as https://api.vers.sh, got 'ftp://envvars.invalid'"
            in failed.stdout + failed.stderr), failed.stdout


def test_values_a_login_cannot_see_as_written_warn_at_preview(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    hashed, long_value = distinctive("before#after"), "x" * 8190
    ws.env |= {"HASHED": hashed, "LONG": long_value}
    configure(ws, sets={"app": {"vars": {"HASHED": {"env": "HASHED"}, "FINE": "ok"}}}, vms={"w": "app"},
              vars={"long": {"key": "LONG_ONE", "value": {"env": "LONG"}}})
    result = ws.preview()
    output = result.stdout + result.stderr
    assert re.search(r"warning: envvars:vers:EnvVars resource 'app': env var 'HASHED': it holds '#', where pam_env "
                     r"ends a value, so a login in a VM sees only what comes before it; it is stored as written",
                     output), output
    assert re.search(r"warning: envvars:vers:EnvVar resource 'long': env var 'LONG_ONE': its /etc/environment line "
                     r"is 8201 bytes and pam_env skips lines over 8190, so a login in a VM will not see it at all",
                     output), output
    assert "'FINE'" not in output
    assert hashed not in output and long_value not in output
    # Applied as written; a login in the VM sees what pam_env makes of it.
    ws.up()
    assert stored(api) == {"HASHED": hashed, "FINE": "ok", "LONG_ONE": long_value}
    vm_id = ws.outputs()["vmIds"]["w"]
    seen = api.post(f"/api/v1/vm/{vm_id}/exec", json={"command": ["sh", "-c", 'printf %s "$HASHED"']}).json()
    assert seen["stdout"] == hashed.split("#")[0]

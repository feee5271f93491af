"""Sevalla's EnvVars and EnvVar through the real Pulumi CLI, against the bundled server: one program shaped by config.

Each test is a fresh user (its own token and applications) on the shared server, with its own Pulumi
home and file backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api, arm, injected
from tests.sevalla import create, delete, deploy, environment, flags, listed, new_application, stored, update
from tests.test_cli import (
    ENGINE_PROPERTY_TRACE,
    configure,
    distinctive,
    failed_preview,
    is_encrypted,
    plaintext_in_state,
    preview_json,
    refresh_preview,
    resources,
    token,
)

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parent / "programs" / "sevalla"
STACK = "envvars-cli-test-sevalla-dev"
VARS = "envvars:sevalla:EnvVars"
VAR = "envvars:sevalla:EnvVar"


def workspace(tmp_path: Path, server: ServerProcess, api: Api, name: str = "ws") -> Workspace:
    """The test program for `api`'s user, in its own directory, Pulumi home and backend."""
    (tmp_path / name).mkdir()
    return Workspace(tmp_path / name, PROGRAM, server.url, token(api))


def test_lifecycle_of_a_map_and_a_variable(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    password, plain, single = distinctive("s3cr3t"), distinctive("pl41n"), distinctive("s1ngle")
    app = new_application(api)
    create(api, app, "OTHER", "set by another client")
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN_VALUE": plain, "SINGLE_VALUE": single}
    ws.set_config("dbPassword", password, secret=True)
    variables = {"GREETING": "hello", "DB_PASSWORD": {"secret": "dbPassword"}, "PLAIN": {"env": "PLAIN_VALUE"}}
    one = {"app": app, "key": "SINGLE", "value": {"env": "SINGLE_VALUE"}}
    configure(ws, envs={"app": {"app": app, "vars": variables}}, vars={"one": one})
    managed = {"GREETING": "hello", "DB_PASSWORD": password, "PLAIN": plain}

    # Create: beside the other client's variable; a second preview changes nothing.
    ws.up()
    assert stored(api, app) == {"OTHER": "set by another client", **managed, "SINGLE": single}
    ids = {item["key"]: item["id"] for item in listed(api, app)}
    assert ws.outputs() == {"envVarIds": {"app": {key: ids[key] for key in managed}},
                            "envVarId": {"one": ids["SINGLE"]}}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})

    # One value changed: that key updated in place, and no value anywhere in the output.
    configure(ws, envs={"app": {"app": app, "vars": {**variables, "GREETING": "bye"}}})
    assert preview_json(ws) == ({STACK: ("same", {}), "app": ("update", {'vars["GREETING"]': "update"})},
                                {"same": 2, "update": 1})
    shown = ws.preview()
    verbose = ws.up("-v=9", "--logtostderr")
    assert stored(api, app)["GREETING"] == "bye"
    assert {item["key"]: item["id"] for item in listed(api, app)} == ids
    leaked = [line for line in (shown.stdout + shown.stderr + verbose.stdout + verbose.stderr).splitlines()
              if any(value in line for value in (password, plain, single, token(api)))]
    assert [line for line in leaked if not ENGINE_PROPERTY_TRACE.search(line)] == []

    # Flags: updated in place on both resources, ids kept.
    configure(ws, envs={"app": {"app": app, "vars": {**variables, "GREETING": "bye"}, "isBuildtime": False}},
              vars={"one": {**one, "isRuntime": False}})
    assert preview_json(ws) == ({STACK: ("same", {}), "app": ("update", {"isBuildtime": "update"}),
                                 "one": ("update", {"isRuntime": "update"})}, {"same": 1, "update": 2})
    ws.up()
    assert flags(api, app) == {"OTHER": (True, True), **dict.fromkeys(managed, (True, False)),
                               "SINGLE": (False, True)}
    assert {item["key"]: item["id"] for item in listed(api, app)} == ids
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})

    # Drift: a value and a flag changed, a managed variable and the EnvVar's deleted out of band; a refresh
    # sees each, and an up restores them.
    update(api, app, "GREETING", value="out of band")
    update(api, app, "DB_PASSWORD", is_buildtime=True)
    delete(api, app, "PLAIN")
    delete(api, app, "SINGLE")
    create(api, app, "EXTRA", "added")
    drift, counts = refresh_preview(ws)
    assert drift["app"] == ("update", {'vars["GREETING"]': "update", 'vars["PLAIN"]': "delete",
                                       "isBuildtime": "update"})
    assert drift["one"][0] == "delete"
    assert counts == {"same": 1, "update": 1, "delete": 1}, drift
    ws.up("--refresh")
    assert stored(api, app) == {"OTHER": "set by another client", "EXTRA": "added", **managed, "GREETING": "bye",
                                "SINGLE": single}
    assert flags(api, app) == {"OTHER": (True, True), "EXTRA": (True, True), **dict.fromkeys(managed, (True, False)),
                               "SINGLE": (False, True)}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})

    # Secrets are ciphertext in state; no plaintext in any state file.
    state = resources(ws)
    assert state["app"]["id"] == app
    assert is_encrypted(state["app"]["inputs"]["vars"]) and is_encrypted(state["app"]["outputs"]["vars"])
    assert is_encrypted(state["one"]["inputs"]["value"]) and is_encrypted(state["one"]["outputs"]["value"])
    assert plaintext_in_state(tmp_path, [password, plain, single, token(api)]) == []

    # Destroy removes only the managed variables.
    ws.destroy()
    assert stored(api, app) == {"OTHER": "set by another client", "EXTRA": "added"}


def test_import_a_map_chosen_keys_and_one_variable(tmp_path: Path, server: ServerProcess,
                                                   new_api: Callable[[], Api]) -> None:
    secret_value = distinctive("s3cr3t")
    api = new_api()
    whole, some = new_application(api, "whole"), new_application(api, "some")
    for key, value in {"K1": secret_value, "K2": "v2"}.items():
        create(api, whole, key, value, is_runtime=False)
    for key, value in {"K1": secret_value, "K2": "v2", "K3": "v3", "OTHER": "kept"}.items():
        create(api, some, key, value)
    k3 = next(item["id"] for item in listed(api, some) if item["key"] == "K3")
    ws = workspace(tmp_path, server, api)
    (ws.dir / "import.json").write_text(json.dumps({"resources": [
        {"type": VARS, "name": "all", "id": whole},
        {"type": VARS, "name": "some", "id": f"{some}/K1,K2"},
        {"type": VAR, "name": "k3", "id": f"{some}/{k3}"}]}))
    ws.run("import", "--file", "import.json", "--yes", "--protect=false", "--generate-code=false")
    state = resources(ws)
    assert (state["all"]["id"], state["all"]["inputs"]["applicationId"]) == (whole, whole)
    assert state["all"]["inputs"]["isRuntime"] is False
    assert (state["some"]["id"], state["some"]["inputs"]["applicationId"]) == (f"{some}/K1,K2", some)
    assert (state["k3"]["id"], state["k3"]["inputs"]["key"]) == (f"{some}/{k3}", "K3")
    for name in ("all", "some"):
        assert is_encrypted(state[name]["inputs"]["vars"]) and is_encrypted(state[name]["outputs"]["vars"])
    assert is_encrypted(state["k3"]["inputs"]["value"])

    ws.set_config("k1", secret_value, secret=True)
    pair = {"K1": {"secret": "k1"}, "K2": "v2"}
    configure(ws, envs={"all": {"app": whole, "vars": pair, "isRuntime": False}, "some": {"app": some, "vars": pair}},
              vars={"k3": {"app": some, "key": "K3", "value": "v3"}})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 4})
    # The same keys in two applications are no conflict; an imported resource updates like any other.
    configure(ws, envs={"all": {"app": whole, "vars": pair, "isRuntime": False},
                        "some": {"app": some, "vars": {**pair, "K2": "changed"}}},
              vars={"k3": {"app": some, "key": "K3", "value": "v3 changed"}})
    ws.up()
    assert stored(api, some) == {"K1": secret_value, "K2": "changed", "K3": "v3 changed", "OTHER": "kept"}
    ws.destroy()
    assert stored(api, whole) == {}
    assert stored(api, some) == {"OTHER": "kept"}
    assert plaintext_in_state(tmp_path, [secret_value]) == []


def test_a_key_managed_twice_or_refused_by_sevalla_fails_at_preview(tmp_path: Path, server: ServerProcess,
                                                                   api: Api) -> None:
    secret_value = distinctive("s3cr3t")
    app, other = new_application(api), new_application(api, "other")
    ws = workspace(tmp_path, server, api)
    ws.set_config("pw", secret_value, secret=True)
    configure(ws, envs={"app": {"app": app, "vars": {"SHARED": {"secret": "pw"}, "OK": "1"}}},
              vars={"one": {"app": app, "key": "SHARED", "value": {"secret": "pw"}}})
    output = failed_preview(ws)
    clash = re.search(r"resource '(app|one)' has a problem: key 'SHARED' is also managed by '(app|one)': "
                      r"manage each key in exactly one resource", output)
    assert clash and {clash[1], clash[2]} == {"app", "one"}, output
    assert secret_value not in output

    configure(ws, envs={"app": {"app": app, "vars": {"A=B": {"secret": "pw"}}}}, vars={})
    output = failed_preview(ws)
    assert (f"{VARS} resource 'app' has a problem: env var key 'A=B' is invalid: keys must match "
            "^[^=\\x00]+$") in output
    assert secret_value not in output
    ws.set_config("long", "x" * 32_769, secret=True)
    configure(ws, envs={}, vars={"one": {"app": app, "key": "LONG", "value": {"secret": "long"}}})
    assert (f"{VAR} resource 'one' has a problem: value of env var 'LONG' is too long: 32769 chars, the limit is "
            "32768") in failed_preview(ws)

    # The same key in two applications is fine; variables that reach neither phase are a warning.
    configure(ws, envs={"app": {"app": app, "vars": {"SHARED": "1"}, "isRuntime": False, "isBuildtime": False}},
              vars={"one": {"app": other, "key": "SHARED", "value": "2"}})
    shown = ws.preview()
    assert re.search(r"warning: .*resource 'app': its variables have isRuntime and isBuildtime both false: stored, "
                     r"but seen by neither the build nor the running app", shown.stdout + shown.stderr), shown.stdout
    assert stored(api, app) == {} and stored(api, other) == {}


def test_flags_reach_the_build_or_the_app_at_the_next_deploy(tmp_path: Path, server: ServerProcess,
                                                             api: Api) -> None:
    app = new_application(api)
    ws = workspace(tmp_path, server, api)
    configure(ws, envs={"both": {"app": app, "vars": {"BOTH": "b"}},
                        "build": {"app": app, "vars": {"BUILD_ONLY": "bo"}, "isRuntime": False},
                        "neither": {"app": app, "vars": {"NEITHER": "n"}, "isRuntime": False, "isBuildtime": False}},
              vars={"run": {"app": app, "key": "RUNTIME_ONLY", "value": "ro", "isBuildtime": False}})
    ws.up()
    ours = {"BOTH", "BUILD_ONLY", "NEITHER", "RUNTIME_ONLY"}
    deploy(api, app)
    assert ours & environment(api, app, "build").keys() == {"BOTH", "BUILD_ONLY"}
    assert ours & environment(api, app, "runtime").keys() == {"BOTH", "RUNTIME_ONLY"}
    assert environment(api, app, "build")["BUILD_ONLY"] == "bo"
    assert environment(api, app, "runtime")["RUNTIME_ONLY"] == "ro"

    # Flags flipped in place: stored at once, seen from the next deploy on.
    configure(ws, envs={"both": {"app": app, "vars": {"BOTH": "b"}, "isBuildtime": False},
                        "build": {"app": app, "vars": {"BUILD_ONLY": "bo"}},
                        "neither": {"app": app, "vars": {"NEITHER": "n"}, "isRuntime": False, "isBuildtime": False}},
              vars={"run": {"app": app, "key": "RUNTIME_ONLY", "value": "ro", "isRuntime": False,
                            "isBuildtime": True}})
    ws.up()
    assert ours & environment(api, app, "runtime").keys() == {"BOTH", "RUNTIME_ONLY"}
    deploy(api, app)
    assert ours & environment(api, app, "build").keys() == {"BUILD_ONLY", "RUNTIME_ONLY"}
    assert ours & environment(api, app, "runtime").keys() == {"BOTH", "BUILD_ONLY"}


def test_an_in_place_change_is_one_request_per_variable(tmp_path: Path, faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("sevalla-cli-requests")) as api:
        app = new_application(api)
        ws = workspace(tmp_path, faulty_server, api)
        five = {f"K{n}": f"v{n}" for n in range(5)}
        configure(ws, envs={"app": {"app": app, "vars": five}}, vars={"one": {"app": app, "key": "ONE", "value": "1"}})
        # A zero-second stall of every Sevalla request: the server counts them, and nothing else changes.
        arm(faulty_server, {"kind": "stall", "seconds": 0, "path_prefix": "/v3/applications", "count": 10_000})
        before = injected(faulty_server)
        ws.up()
        assert injected(faulty_server) - before == 6  # one POST per variable

        configure(ws, vars={"one": {"app": app, "key": "ONE", "value": "2", "isRuntime": False}})
        before = injected(faulty_server)
        ws.up()
        assert injected(faulty_server) - before == 1  # the value and the flag in one PUT

        configure(ws, envs={"app": {"app": app, "vars": {**five, "K0": "changed"}, "isBuildtime": False}})
        before = injected(faulty_server)
        ws.up()
        assert injected(faulty_server) - before == 5  # a shared flag: one PUT per variable
        assert flags(api, app) == {**dict.fromkeys(five, (True, False)), "ONE": (False, True)}
        assert stored(api, app) == {**five, "K0": "changed", "ONE": "2"}


def test_a_key_moved_between_resources_or_renamed_is_never_lost(tmp_path: Path, server: ServerProcess,
                                                                 api: Api) -> None:
    app = new_application(api)
    ws = workspace(tmp_path, server, api)
    configure(ws, envs={"app": {"app": app, "vars": {"A": "1", "B": "2"}}}, vars={})
    ws.up()

    # B moves to its own EnvVar: whichever runs first, B ends with the EnvVar's value, owned by it alone.
    configure(ws, envs={"app": {"app": app, "vars": {"A": "1"}}}, vars={"b": {"app": app, "key": "B", "value": "3"}})
    ws.up()
    assert stored(api, app) == {"A": "1", "B": "3"}
    b_id = next(item["id"] for item in listed(api, app) if item["key"] == "B")
    assert resources(ws)["b"]["id"] == f"{app}/{b_id}"
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})

    # The EnvVar renamed (same key): the new one takes the variable over, the old one's delete leaves it.
    configure(ws, vars={"b_renamed": {"app": app, "key": "B", "value": "3"}})
    ws.up()
    assert stored(api, app) == {"A": "1", "B": "3"}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})
    replaced = ws.up("--replace", f"urn:pulumi:dev::envvars-cli-test-sevalla::{VAR}::b_renamed")
    assert re.search(r"1 replaced", replaced.stdout), replaced.stdout
    assert stored(api, app) == {"A": "1", "B": "3"}
    ws.destroy()
    assert stored(api, app) == {}

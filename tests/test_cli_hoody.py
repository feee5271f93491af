"""Hoody's ContainerEnv through the real Pulumi CLI, against the bundled server: one program shaped by config.

Each test is a fresh user (its own token and containers) on the shared server, with its own Pulumi
home and file backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.hoody import delete, new_container, patch, restart, running_env, stored
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

PROGRAM = Path(__file__).resolve().parent / "programs" / "hoody"
STACK = "envvars-cli-test-hoody-dev"
ENV = "envvars:hoody:ContainerEnv"


def workspace(tmp_path: Path, server: ServerProcess, api: Api, name: str = "ws") -> Workspace:
    """The test program for `api`'s user, in its own directory, Pulumi home and backend."""
    (tmp_path / name).mkdir()
    return Workspace(tmp_path / name, PROGRAM, server.url, token(api))


def test_lifecycle_of_a_container_env(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    password, plain = distinctive("s3cr3t"), distinctive("pl41n")
    container = new_container(api)
    patch(api, container, {"OTHER": "set by another client"})
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN_VALUE": plain}
    ws.set_config("dbPassword", password, secret=True)
    app = {"GREETING": "hello", "DB_PASSWORD": {"secret": "dbPassword"}, "PLAIN": {"env": "PLAIN_VALUE"}}
    configure(ws, envs={"app": {"container": container, "vars": app}})
    managed = {"GREETING": "hello", "DB_PASSWORD": password, "PLAIN": plain}

    # Create: stored beside the other client's key; not in the running container until it restarts.
    ws.up()
    assert stored(api, container) == {"OTHER": "set by another client", **managed}
    assert ws.outputs()["synced"] == {"app": False}
    assert "GREETING" not in running_env(api, container)
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})
    restart(api, container)
    assert running_env(api, container)["GREETING"] == "hello"

    # One value changed: that key updated in place, and no value anywhere in the output. Without
    # restartOnChange the running container keeps the old value.
    configure(ws, envs={"app": {"container": container, "vars": {**app, "GREETING": "bye"}}})
    assert preview_json(ws) == ({STACK: ("same", {}), "app": ("update", {'vars["GREETING"]': "update"})},
                                {"same": 1, "update": 1})
    shown = ws.preview()
    verbose = ws.up("-v=9", "--logtostderr")
    assert stored(api, container)["GREETING"] == "bye"
    assert ws.outputs()["synced"] == {"app": False}
    assert running_env(api, container)["GREETING"] == "hello"
    leaked = [line for line in (shown.stdout + shown.stderr + verbose.stdout + verbose.stderr).splitlines()
              if any(value in line for value in (password, plain, token(api)))]
    assert [line for line in leaked if not ENGINE_PROPERTY_TRACE.search(line)] == []

    # restartOnChange: the next apply restarts the container, which then runs with the stored map.
    configure(ws, envs={"app": {"container": container, "vars": {**app, "GREETING": "bye"}, "restartOnChange": True}})
    ws.up()
    assert ws.outputs()["synced"] == {"app": True}
    assert running_env(api, container)["GREETING"] == "bye"
    configure(ws, envs={"app": {"container": container, "vars": {**app, "GREETING": "again"}, "restartOnChange": True}})
    ws.up()
    assert running_env(api, container)["GREETING"] == "again"
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})

    # Drift: a value changed and a managed key deleted out of band; a refresh sees both, an up restores them.
    patch(api, container, {"GREETING": "out of band", "EXTRA": "added"})
    delete(api, container, "PLAIN")
    drift, counts = refresh_preview(ws)
    assert drift["app"] == ("update", {'vars["GREETING"]': "update", 'vars["PLAIN"]': "delete"})
    assert counts == {"same": 1, "update": 1}, drift
    ws.up("--refresh")
    assert stored(api, container) == {"OTHER": "set by another client", "EXTRA": "added", **managed,
                                      "GREETING": "again"}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})

    # Secrets are ciphertext in state; no plaintext in any state file.
    state = resources(ws)["app"]
    assert state["id"] == container
    assert is_encrypted(state["inputs"]["vars"]) and is_encrypted(state["outputs"]["vars"])
    assert plaintext_in_state(tmp_path, [password, plain, token(api)]) == []

    # Destroy removes only the managed keys.
    ws.destroy()
    assert stored(api, container) == {"OTHER": "set by another client", "EXTRA": "added"}


def test_import_a_container_and_chosen_keys(tmp_path: Path, server: ServerProcess,
                                            new_api: Callable[[], Api]) -> None:
    secret_value = distinctive("s3cr3t")
    api = new_api()
    whole, some = new_container(api, "whole"), new_container(api, "some")
    patch(api, whole, {"K1": secret_value, "K2": "v2"})
    patch(api, some, {"K1": secret_value, "K2": "v2", "K3": "v3", "OTHER": "kept"})
    ws = workspace(tmp_path, server, api)
    (ws.dir / "import.json").write_text(json.dumps({"resources": [
        {"type": ENV, "name": "all", "id": whole},
        {"type": ENV, "name": "some", "id": f"{some}/K1,K2"}]}))
    ws.run("import", "--file", "import.json", "--yes", "--protect=false", "--generate-code=false")
    state = resources(ws)
    assert (state["all"]["id"], state["all"]["inputs"]["containerId"]) == (whole, whole)
    assert (state["some"]["id"], state["some"]["inputs"]["containerId"]) == (f"{some}/K1,K2", some)
    for name in ("all", "some"):
        assert is_encrypted(state[name]["inputs"]["vars"]) and is_encrypted(state[name]["outputs"]["vars"])

    ws.set_config("k1", secret_value, secret=True)
    configure(ws, envs={"all": {"container": whole, "vars": {"K1": {"secret": "k1"}, "K2": "v2"}},
                        "some": {"container": some, "vars": {"K1": {"secret": "k1"}, "K2": "v2"}}})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})
    # The same key on two containers is no conflict; an imported resource updates like any other.
    configure(ws, envs={"all": {"container": whole, "vars": {"K1": {"secret": "k1"}, "K2": "v2"}},
                        "some": {"container": some, "vars": {"K1": {"secret": "k1"}, "K2": "changed"}}})
    ws.up()
    assert stored(api, some) == {"K1": secret_value, "K2": "changed", "K3": "v3", "OTHER": "kept"}
    ws.destroy()
    assert stored(api, whole) == {}
    assert stored(api, some) == {"K3": "v3", "OTHER": "kept"}
    assert plaintext_in_state(tmp_path, [secret_value]) == []


def test_reserved_keys_and_missing_settings_fail_at_preview(tmp_path: Path, server: ServerProcess,
                                                            api: Api) -> None:
    secret_value = distinctive("s3cr3t")
    container = new_container(api)
    ws = workspace(tmp_path, server, api)
    ws.set_config("pw", secret_value, secret=True)
    configure(ws, envs={"app": {"container": container, "vars": {"HOODY_TOKEN": {"secret": "pw"}, "OK": "1"}}})
    output = failed_preview(ws)
    assert (f"{ENV} resource 'app' has a problem: env var key 'HOODY_TOKEN' uses the prefix 'HOODY_', which "
            "Hoody reserves") in output
    assert secret_value not in output

    configure(ws, envs={"app": {"container": container, "vars": {"OK": "1"}}})
    ws.env.pop("HOODY_URL")
    assert ("no Hoody API URL is configured: set envvars:hoodyUrl (`pulumi config set envvars:hoodyUrl URL`) or "
            "the HOODY_URL environment variable") in failed_preview(ws)
    assert stored(api, container) == {}

"""Vertra's AppEnvironments through the real Pulumi CLI, against the bundled server: one program shaped by config.

Each test is a fresh user (its own token and apps) on the shared server, with its own Pulumi home and file
backend. Each `pulumi` run costs seconds, so each test proves several things.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
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
from tests.vertra import delete, new_app, notes, put, stored

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parent / "programs" / "vertra"
STACK = "envvars-cli-test-vertra-dev"
ENV = "envvars:vertra:AppEnvironments"


def workspace(tmp_path: Path, server: ServerProcess, api: Api) -> Workspace:
    """The test program for `api`'s user, in its own directory, Pulumi home and backend."""
    (tmp_path / "ws").mkdir()
    return Workspace(tmp_path / "ws", PROGRAM, server.url, token(api))


def leaks(outputs: list[str], values: list[str]) -> list[str]:
    """Lines of `outputs` holding any of `values`, but the engine's own property trace (see tests/test_cli.py)."""
    return [line for output in outputs for line in output.splitlines()
            if any(value in line for value in values) and not ENGINE_PROPERTY_TRACE.search(line)]


def test_lifecycle_drift_and_the_app_limit(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    password, plain = distinctive("s3cr3t"), distinctive("pl41n")
    app = new_app(api)
    put(api, app, {"OTHER": "set by another client"})
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN_VALUE": plain}
    ws.set_config("dbPassword", password, secret=True)
    variables = {"GREETING": "hello", "DB_PASSWORD": {"secret": "dbPassword"}, "PLAIN": {"env": "PLAIN_VALUE"}}
    configure(ws, envs={"app": {"app": app, "vars": variables, "notes": {"DB_PASSWORD": "rotate monthly"}}})
    managed = {"GREETING": "hello", "DB_PASSWORD": password, "PLAIN": plain}

    # Create: beside the other client's variable, with its note; a second preview changes nothing.
    ws.up()
    assert stored(api, app) == {"OTHER": "set by another client", **managed}
    assert notes(api, app) == {"OTHER": None, "GREETING": None, "DB_PASSWORD": "rotate monthly", "PLAIN": None}
    assert ws.outputs() == {"restartPending": {"app": True}}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})

    # One value and one note changed: those keys updated in place, no value anywhere in the output.
    changed = {"app": {"app": app, "vars": {**variables, "GREETING": "bye"}, "notes": {"GREETING": "the banner"}}}
    configure(ws, envs=changed)
    assert preview_json(ws) == ({STACK: ("same", {}), "app": ("update", {
        'vars["GREETING"]': "update", 'notes["GREETING"]': "add", 'notes["DB_PASSWORD"]': "delete"})},
        {"same": 1, "update": 1})
    verbose = ws.run("up", "--yes", "--diff", "-v=9", "--logtostderr")
    assert stored(api, app)["GREETING"] == "bye"
    assert notes(api, app) == {"OTHER": None, "GREETING": "the banner", "DB_PASSWORD": None, "PLAIN": None}
    assert leaks([verbose.stdout, verbose.stderr], [password, plain, token(api)]) == []

    # Drift: a value changed and a managed key deleted out of band; a refresh sees both, an up restores them.
    put(api, app, {"GREETING": "out of band", "EXTRA": "added"})
    delete(api, app, "PLAIN")
    drift, counts = refresh_preview(ws)
    assert drift["app"] == ("update", {'vars["GREETING"]': "update", 'vars["PLAIN"]': "delete"})
    assert counts == {"same": 1, "update": 1}, drift
    ws.up("--refresh")
    assert stored(api, app) == {"OTHER": "set by another client", "EXTRA": "added", **managed, "GREETING": "bye"}

    # The app filled to Vertra's 25 out of band: an apply adding two keys and changing one fails, naming the
    # limit and who holds the rest, and writes none of it; once room is made the same up goes through.
    filler = {f"FILL_{n:02}": "f" for n in range(20)}
    put(api, app, filler)
    before = stored(api, app)
    grown = {"app": {**changed["app"], "vars": {**variables, "GREETING": "grown", "NEW_1": "1", "NEW_2": "2"}}}
    configure(ws, envs=grown)
    failed = ws.up(check=False)
    assert failed.returncode != 0
    assert (f"writing 3 variable(s) to app {app!r} failed, none of them written: PUT /v1/apps/{app}/environments "
            "failed with HTTP 400: ENV_LIMIT_EXCEEDED: too many env vars: the set would hold 27 after this change, "
            "the limit on Vertra is 25. The app holds 22 variable(s) this resource does not manage (set by another "
            "resource or outside Pulumi) and this resource manages 5: together more than Vertra's 25 per app. "
            "Remove variables from the app or from this resource") in failed.stdout + failed.stderr
    assert stored(api, app) == before
    assert leaks([failed.stdout, failed.stderr], [password, plain, token(api)]) == []
    delete(api, app, *filler)
    ws.up()
    assert stored(api, app) == {"OTHER": "set by another client", "EXTRA": "added", **managed, "GREETING": "grown",
                                "NEW_1": "1", "NEW_2": "2"}

    # Secrets are ciphertext in state; no plaintext in any state file.
    state = resources(ws)["app"]
    assert state["id"] == app
    assert is_encrypted(state["inputs"]["vars"]) and is_encrypted(state["outputs"]["vars"])
    assert plaintext_in_state(tmp_path, [password, plain, token(api)]) == []

    # Destroy removes only the managed keys.
    ws.destroy()
    assert stored(api, app) == {"OTHER": "set by another client", "EXTRA": "added"}


def test_import_and_what_fails_at_preview(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    secret_value = distinctive("s3cr3t")
    whole, some = new_app(api, "whole"), new_app(api, "some")
    put(api, whole, {"K1": secret_value, "K2": "v2"}, K1="the first")
    put(api, some, {"K1": secret_value, "K2": "v2", "K3": "v3", "OTHER": "kept"})
    ws = workspace(tmp_path, server, api)
    (ws.dir / "import.json").write_text(json.dumps({"resources": [
        {"type": ENV, "name": "all", "id": whole},
        {"type": ENV, "name": "some", "id": f"{some}/K1,K2"}]}))
    ws.run("import", "--file", "import.json", "--yes", "--protect=false", "--generate-code=false")
    state = resources(ws)
    assert (state["all"]["id"], state["all"]["inputs"]["appId"]) == (whole, whole)
    assert state["all"]["inputs"]["notes"] == {"K1": "the first"}
    assert (state["some"]["id"], state["some"]["inputs"]["appId"]) == (f"{some}/K1,K2", some)
    for name in ("all", "some"):
        assert is_encrypted(state[name]["inputs"]["vars"]) and is_encrypted(state[name]["outputs"]["vars"])

    ws.set_config("k1", secret_value, secret=True)
    pair = {"K1": {"secret": "k1"}, "K2": "v2"}
    configure(ws, envs={"all": {"app": whole, "vars": pair, "notes": {"K1": "the first"}},
                        "some": {"app": some, "vars": pair}})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 3})

    # Refused at preview, naming the key or the limit, writing nothing: a reserved key in any case, a value too
    # long, more keys than an app holds (every problem of the resource at once); a key managed twice in one app,
    # however the app is named.
    ws.set_config("long", "x" * 1001, secret=True)
    crowded = {"port": {"secret": "k1"}, "LONG": {"secret": "long"}, **{f"K{n:02}": "v" for n in range(24)}}
    configure(ws, envs={"all": {"app": whole, "vars": crowded}})
    output = failed_preview(ws)
    for problem in ("env var key 'port' is reserved by Vertra (in any case) and cannot be set",
                    "value of env var 'LONG' is too long: 1001 chars, the limit is 1000",
                    "too many env vars: the set would hold 26 after this change, the limit on Vertra is 25"):
        assert f"{ENV} resource 'all' has a problem: {problem}" in output, output
    configure(ws, envs={"some": {"app": some, "vars": pair}, "twice": {"app": f"{some}-{'0' * 32}", "vars": pair}})
    output += failed_preview(ws)
    assert "key 'K1' is also managed by" in output, output
    assert secret_value not in output
    assert stored(api, whole) == {"K1": secret_value, "K2": "v2"}
    assert plaintext_in_state(tmp_path, [secret_value]) == []

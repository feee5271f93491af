"""Phala's CvmEnv through the real Pulumi CLI, against the bundled server: one program shaped by config.

Each test is a fresh user (its own token and CVMs) on the shared server, with its own Pulumi home and file
backend. Each `pulumi` run costs seconds, so each test proves several things.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.phala import LEDGER, allowed, info, new_cvm, register, running_env
from tests.test_cli import (
    configure,
    distinctive,
    is_encrypted,
    plaintext_in_state,
    preview_json,
    resources,
    token,
)
from tests.test_cli_vertra import leaks

pytestmark = pytest.mark.slow

PROGRAM = Path(__file__).resolve().parent / "programs" / "phala"
STACK = "envvars-cli-test-phala-dev"


def workspace(tmp_path: Path, server: ServerProcess, api: Api) -> Workspace:
    """The test program for `api`'s user, in its own directory, Pulumi home and backend."""
    (tmp_path / "ws").mkdir()
    return Workspace(tmp_path / "ws", PROGRAM, server.url, token(api))


def test_lifecycle_on_an_onchain_kms_through_the_registrar(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    password, plain = distinctive("s3cr3t"), distinctive("pl41n")
    cvm = new_cvm(api, "onchain")
    ws = workspace(tmp_path, server, api)
    ws.env |= {"PLAIN_VALUE": plain}
    ws.set_config("envvars:phalaRegistrarUrl", server.url + LEDGER)
    ws.set_config("envvars:phalaRegistrarToken", token(api), secret=True)
    ws.set_config("dbPassword", password, secret=True)
    variables = {"GREETING": "hello", "DB_PASSWORD": {"secret": "dbPassword"}, "PLAIN": {"env": "PLAIN_VALUE"}}
    configure(ws, envs={"cvm": {"cvm": cvm, "vars": variables}})
    managed = {"GREETING": "hello", "DB_PASSWORD": password, "PLAIN": plain}

    # Create: the allowed keys change from none, so the hash is registered and the update sent again; the CVM
    # runs with the set when the up ends. A second preview changes nothing (values are diffed from the state).
    ws.up()
    assert {key: running_env(api, cvm).get(key) for key in managed} == managed
    assert (allowed(api, cvm), info(api, cvm)["status"]) == (sorted(managed), "running")
    assert ws.outputs() == {"running": {"cvm": True}}
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})

    # One value changed: that key alone, no value anywhere in the output (at -v=9 too, but the engine's own trace).
    configure(ws, envs={"cvm": {"cvm": cvm, "vars": {**variables, "GREETING": "bye"}}})
    assert preview_json(ws) == ({STACK: ("same", {}), "cvm": ("update", {'vars["GREETING"]': "update"})},
                                {"same": 1, "update": 1})
    verbose = ws.run("up", "--yes", "--diff", "-v=9", "--logtostderr")
    assert running_env(api, cvm)["GREETING"] == "bye"
    assert leaks([verbose.stdout, verbose.stderr], [password, plain, token(api)]) == []

    # A key added: the allowed keys change, so 465, registered through the registrar, sent again.
    grown = {**variables, "GREETING": "bye", "NEW": "new"}
    configure(ws, envs={"cvm": {"cvm": cvm, "vars": grown}})
    assert preview_json(ws)[0]["cvm"] == ("update", {'vars["NEW"]': "add", "envKeys": "update"})
    ws.up()
    assert (allowed(api, cvm), running_env(api, cvm)["NEW"]) == (sorted([*managed, "NEW"]), "new")

    # Secrets are ciphertext in state; no plaintext in any state file.
    state = resources(ws)["cvm"]
    assert (state["id"], state["outputs"]["appId"]) == (cvm, info(api, cvm)["app_id"])
    assert is_encrypted(state["inputs"]["vars"]) and is_encrypted(state["outputs"]["vars"])
    assert plaintext_in_state(tmp_path, [password, plain, token(api)]) == []
    assert not any(value in ws.export() for value in (password, plain))

    # Destroy: the CVM runs with an empty set; its allowed keys stay (no registration needed).
    ws.destroy()
    assert not set(grown) & set(running_env(api, cvm))
    assert allowed(api, cvm) == sorted([*managed, "NEW"])


def test_without_a_registrar_the_hash_is_registered_by_hand(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    hidden = distinctive("h1dden")
    cvm = new_cvm(api, "onchain")
    ws = workspace(tmp_path, server, api)
    ws.env |= {"HIDDEN_VALUE": hidden}  # in no config: the state must hold it as a secret only
    spec = {"cvm": cvm, "vars": {"A": "a", "HIDDEN": {"env": "HIDDEN_VALUE"}}, "envKeys": ["A"]}
    configure(ws, envs={"cvm": spec})
    failed = ws.up(check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    found = re.search(r"needs compose hash ([0-9a-f]{64}) registered for app (\w+) first, and no registrar is "
                      r"configured\. Nothing was changed\. Register the hash on the app's contract", output)
    assert found is not None, output
    assert "env var 'HIDDEN' is not in envKeys: it is not sent, as the CVM would drop it" in output
    assert (allowed(api, cvm), "A" in running_env(api, cvm)) == ([], False)

    compose_hash, app_id = found.groups()
    configure(ws, envs={"cvm": {**spec, "composeHash": compose_hash,
                                "transactionHash": register(api, app_id, compose_hash)}})
    ws.up()
    # Keys outside the allowed ones never reach the CVM.
    inside = running_env(api, cvm)
    assert (allowed(api, cvm), inside["A"], "HIDDEN" in inside) == (["A"], "a", False)
    assert hidden not in output and plaintext_in_state(tmp_path, [hidden]) == []

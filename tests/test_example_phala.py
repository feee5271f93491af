"""examples/phala-python and phala-typescript as a user runs them: up on an on-chain-KMS CVM (its hash registered
by the registrar), a changed value reaching the restarted CVM, destroy."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.phala import LEDGER, allowed, info, new_cvm, running_env
from tests.test_cli import token

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_the_example_seals_its_set_and_waits_for_the_cvm(language: str, tmp_path: Path, server: ServerProcess,
                                                         api: Api) -> None:
    cvm = new_cvm(api, "onchain")
    ws = Workspace(tmp_path, EXAMPLES / f"phala-{language}", server.url, token(api))
    ws.set_config("cvmId", cvm)
    ws.set_config("envvars:phalaRegistrarUrl", server.url + LEDGER)
    ws.set_config("envvars:phalaRegistrarToken", token(api), secret=True)
    ws.up()
    assert ws.outputs() == {"appId": info(api, cvm)["app_id"], "running": True}
    example = {"APP_ENV": "demo", "GREETING": "hello, world", "DATABASE_URL": "postgres://app@db.internal/app"}
    assert {key: running_env(api, cvm).get(key) for key in example} == example
    assert allowed(api, cvm) == sorted(example)

    ws.set_config("greeting", "hello again, world")
    ws.up()
    assert running_env(api, cvm)["GREETING"] == "hello again, world"

    ws.destroy()
    assert not set(example) & set(running_env(api, cvm))

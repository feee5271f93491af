"""examples/hoody-python and hoody-typescript as a user runs them: up, a changed value reaching the running
container, destroy."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.hoody import new_container, patch, running_env, stored
from tests.test_cli import token

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_the_example_restarts_its_container_with_each_change(language: str, tmp_path: Path, server: ServerProcess,
                                                             api: Api) -> None:
    container = new_container(api)
    patch(api, container, {"OTHER": "kept"})
    ws = Workspace(tmp_path, EXAMPLES / f"hoody-{language}", server.url, token(api))
    ws.set_config("containerId", container)
    ws.up()
    assert ws.outputs() == {"synced": True}
    example = {"APP_ENV": "demo", "GREETING": "hello, world", "DATABASE_URL": "postgres://app@db.internal/app"}
    assert stored(api, container) == {"OTHER": "kept", **example}
    assert {key: running_env(api, container).get(key) for key in example} == example

    ws.set_config("greeting", "hello again, world")
    ws.up()
    assert ws.outputs() == {"synced": True}
    assert running_env(api, container)["GREETING"] == "hello again, world"

    ws.destroy()
    assert stored(api, container) == {"OTHER": "kept"}
    assert not set(example) & set(running_env(api, container))

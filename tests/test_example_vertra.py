"""examples/vertra-python and vertra-typescript as a user runs them: up, a changed value reaching the running app
at once, destroy."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.test_cli import token
from tests.vertra import new_app, notes, put, running_env, stored

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_the_example_restarts_its_app_with_each_change(language: str, tmp_path: Path, server: ServerProcess,
                                                       api: Api) -> None:
    app = new_app(api)
    put(api, app, {"OTHER": "kept"})
    ws = Workspace(tmp_path, EXAMPLES / f"vertra-{language}", server.url, token(api))
    ws.set_config("appId", app)
    ws.up()
    assert ws.outputs() == {"restartPending": False}
    example = {"APP_ENV": "demo", "GREETING": "hello, world", "DATABASE_URL": "postgres://app@db.internal/app"}
    assert stored(api, app) == {"OTHER": "kept", **example}
    assert notes(api, app)["GREETING"] == "what the home page says"
    assert {key: running_env(api, app).get(key) for key in example} == example

    ws.set_config("greeting", "hello again, world")
    ws.up()
    assert running_env(api, app)["GREETING"] == "hello again, world"

    ws.destroy()
    assert stored(api, app) == {"OTHER": "kept"}
    assert not set(example) & set(running_env(api, app))

"""examples/sevalla-python and sevalla-typescript as a user runs them: up, a deploy seeing each variable in its
phase, a change, destroy."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.sevalla import create, deploy, environment, listed, new_application, stored
from tests.test_cli import token

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_the_example_reaches_the_build_and_the_app_at_the_next_deploy(language: str, tmp_path: Path,
                                                                      server: ServerProcess, api: Api) -> None:
    app = new_application(api)
    create(api, app, "OTHER", "kept")
    ws = Workspace(tmp_path, EXAMPLES / f"sevalla-{language}", server.url, token(api))
    ws.set_config("applicationId", app)
    ws.up()
    ids = {item["key"]: item["id"] for item in listed(api, app)}
    assert ws.outputs() == {"envVarIds": {"APP_ENV": ids["APP_ENV"], "GREETING": ids["GREETING"]},
                            "databaseUrlId": ids["DATABASE_URL"]}
    shared = {"APP_ENV": "demo", "GREETING": "hello, world"}
    database = {"DATABASE_URL": "postgres://app@db.internal/app"}
    assert stored(api, app) == {"OTHER": "kept", **shared, **database}

    deploy(api, app)
    build, runtime = environment(api, app, "build"), environment(api, app, "runtime")
    assert {key: build.get(key) for key in [*shared, *database]} == {**shared, "DATABASE_URL": None}
    assert {key: runtime.get(key) for key in [*shared, *database]} == {**shared, **database}

    ws.set_config("greeting", "hello again, world")
    ws.up()
    assert environment(api, app, "runtime")["GREETING"] == "hello, world"  # until the next deploy
    deploy(api, app)
    assert environment(api, app, "runtime")["GREETING"] == "hello again, world"

    ws.destroy()
    assert stored(api, app) == {"OTHER": "kept"}

"""`make dist` as a user meets it: the artifacts are what the README says, and a Python program runs from
them alone — a fresh venv with the SDK wheel, and a Pulumi home with the plugin installed from its archive
(no project venv, no repo on PATH or PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envvars_provider import VERSION
from envvars_provider.schema import GO_MODULE, NPM_PACKAGE
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace, pulumi_bin
from tests.conftest import Api
from tests.sevalla import new_application, stored
from tests.test_cli import token

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PLUGIN = f"pulumi-resource-envvars-v{VERSION}-linux-amd64.tar.gz"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(REPO / "scripts" / "dist.py"), str(out)], check=True, capture_output=True)
    return out


def test_the_artifacts_are_named_and_made_as_documented(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == sorted([
        f"envvars-{VERSION}-py3-none-any.whl", f"pulumi_envvars-{VERSION}-py3-none-any.whl",
        f"envvars-pulumi-{VERSION}.tgz", f"envvars-go-sdk-v{VERSION}.zip", PLUGIN,
    ])
    with tarfile.open(dist / f"envvars-pulumi-{VERSION}.tgz") as npm:
        package = json.load(npm.extractfile("package/package.json"))  # type: ignore[arg-type]
        assert {"package/index.js", "package/index.d.ts", "package/vers/envVars.js"} <= set(npm.getnames())
    assert (package["name"], package["version"]) == (NPM_PACKAGE, VERSION)
    with zipfile.ZipFile(dist / f"envvars-go-sdk-v{VERSION}.zip") as go:
        assert go.read(f"envvars-go-sdk-v{VERSION}/go.mod").decode().startswith(f"module {GO_MODULE}\n")
    with tarfile.open(dist / PLUGIN) as plugin:
        assert {"PulumiPlugin.yaml", "requirements.txt", "pulumi-resource-envvars"} <= set(plugin.getnames())


def test_a_python_program_runs_from_the_artifacts_alone(
    dist: Path, tmp_path: Path, server: ServerProcess, api: Api
) -> None:
    home, venv = tmp_path / "pulumi-home", tmp_path / "venv"
    engine = {"HOME": os.environ.get("HOME", str(tmp_path)), "PULUMI_HOME": str(home), "PULUMI_SKIP_UPDATE_CHECK": "1",
              "PATH": f"{pulumi_bin()}:{SYSTEM_PATH}"}

    def install_plugin() -> None:
        subprocess.run([str(pulumi_bin() / "pulumi"), "plugin", "install", "resource", "envvars", VERSION,
                        "--file", str(dist / PLUGIN)], env=engine, check=True, capture_output=True)

    def install_sdk() -> None:
        subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        str(dist / f"pulumi_envvars-{VERSION}-py3-none-any.whl")], check=True, capture_output=True)

    with ThreadPoolExecutor(2) as pool:  # the two installs are independent: the test's longest part, halved
        for done in [pool.submit(install_plugin), pool.submit(install_sdk)]:
            done.result()

    ws = Workspace(tmp_path, REPO / "examples" / "sevalla-python", server.url, token(api))
    # The program as a user outside the repo has it: the fresh venv, and no `plugins:` path.
    (ws.dir / "Pulumi.yaml").write_text(
        f"name: sevalla-python\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {venv}\n")
    ws.env.update(engine, PULUMI_PYTHON_CMD=str(venv / "bin" / "python"))
    app = new_application(api)
    ws.set_config("applicationId", app)
    ws.up()
    assert stored(api, app) == {"APP_ENV": "demo", "GREETING": "hello, world",
                                "DATABASE_URL": "postgres://app@db.internal/app"}

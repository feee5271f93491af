"""examples/vers-typescript through the real CLI: the Vers story in TypeScript.

The SDK is sdk/nodejs built by scripts/build-sdks.sh; the npm packages are installed once per lock file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.vers_story import run_the_story

pytestmark = pytest.mark.slow


def test_the_example_boots_vms_with_its_set_and_replaces_them_on_a_change(tmp_path: Path, server: ServerProcess,
                                                                          api: Api) -> None:
    ws = run_the_story("typescript", tmp_path, server, api)
    # Runs only transpile the program (its tsconfig): type-check it against the built SDK once.
    checked = subprocess.run(["node_modules/.bin/tsc", "--noEmit", "-p", "."], cwd=ws.dir, capture_output=True,
                             text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

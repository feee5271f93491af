"""examples/vers-typescript through the real CLI: the Vers story in TypeScript; every TypeScript example type-checks.

The SDK is sdk/nodejs built by scripts/build-sdks.sh; the npm packages are installed once per lock file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import node_modules
from tests.conftest import Api
from tests.vers_story import EXAMPLES, run_the_story

pytestmark = pytest.mark.slow


def test_the_example_boots_vms_with_its_set_and_replaces_them_on_a_change(tmp_path: Path, server: ServerProcess,
                                                                          api: Api) -> None:
    run_the_story("typescript", tmp_path, server, api)


@pytest.mark.parametrize("example", sorted(path.name for path in EXAMPLES.glob("*-typescript")))
def test_the_example_type_checks_against_the_built_sdk(example: str, tmp_path: Path) -> None:
    # Runs only transpile (the examples' tsconfig), so a type error would pass unseen there.
    program = tmp_path / example
    shutil.copytree(EXAMPLES / example, program)
    (program / "node_modules").symlink_to(node_modules(EXAMPLES / example))
    checked = subprocess.run(["node_modules/.bin/tsc", "--noEmit", "-p", "."], cwd=program, capture_output=True,
                             text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

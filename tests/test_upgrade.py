"""Upgrades: a stack written by an earlier release previews with no changes under today's provider.

Each fixture is a stack exported by that release (`pulumi stack export`, source positions removed)
with its `Pulumi.dev.yaml` (config and the passphrase salt of its secrets), made with the CLI test
program. Keep every fixture: a later release must still read the stacks users have today.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.test_cli import STACK, preview_json, workspace

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("release", ["0.1.0"])
def test_a_stack_of_an_earlier_release_previews_with_no_changes(
    tmp_path: Path, server: ServerProcess, api: Api, release: str,
) -> None:
    fixture = FIXTURES / f"upgrade-{release}"
    ws = workspace(tmp_path, server, api)
    shutil.copy(fixture / "Pulumi.dev.yaml", ws.dir / "Pulumi.dev.yaml")
    ws.run("stack", "import", "--file", str(fixture / "stack.json"))
    steps, counts = preview_json(ws)
    # 2 EnvVars, 1 EnvVar, 2 Vm and the stack: nothing to update, nothing to replace.
    assert counts == {"same": 6}, steps
    assert steps == {STACK: ("same", {})}

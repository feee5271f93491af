"""examples/vers-yaml through the real CLI: the Vers story in YAML (the schema read from the plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.vers_story import run_the_story

pytestmark = pytest.mark.slow


def test_the_example_boots_vms_with_its_set_and_replaces_them_on_a_change(tmp_path: Path, server: ServerProcess,
                                                                          api: Api) -> None:
    run_the_story("yaml", tmp_path, server, api)

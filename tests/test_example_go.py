"""examples/vers-go through the real CLI: the Vers story in Go (sdk/go through the go.mod's `replace`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.vers_story import run_the_story

pytestmark = pytest.mark.slow


def test_the_example_boots_vms_with_its_set_and_replaces_them_on_a_change(tmp_path: Path, server: ServerProcess,
                                                                          api: Api) -> None:
    run_the_story("go", tmp_path, server, api)

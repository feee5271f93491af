"""schema.json and the SDKs (sdk/python, sdk/nodejs, sdk/go) are generated and committed: all must match a
fresh generation."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

from envvars_provider.schema import render

REPO = Path(__file__).resolve().parent.parent


def test_schema_json_is_fresh() -> None:
    assert (REPO / "schema.json").read_text() == render(), "schema.json is stale: run `make gen-schema`"


def test_every_resource_and_property_is_described() -> None:
    import json

    schema = json.loads(render())
    for token, resource in schema["resources"].items():
        assert resource["description"], token
        for name, prop in resource["properties"].items():
            assert prop["description"], f"{token}.{name}"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p))


@pytest.mark.slow
def test_sdks_are_fresh(tmp_path: Path) -> None:
    subprocess.run([str(REPO / "scripts" / "gen-sdk.sh"), str(REPO / "schema.json"), str(tmp_path)],
                   check=True, capture_output=True)
    for language in ("python", "nodejs", "go"):
        committed, fresh = REPO / "sdk" / language, tmp_path / language
        assert _tree(fresh) == _tree(committed), f"sdk/{language} has other files: run `make gen-sdk`"
        stale = [name for name in _tree(committed)
                 if not filecmp.cmp(committed / name, fresh / name, shallow=False)]
        assert not stale, f"sdk/{language} is stale ({stale}): run `make gen-sdk`"

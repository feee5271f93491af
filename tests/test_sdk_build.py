"""The generated TypeScript and Go SDKs build with their pinned toolchains (scripts/build-sdks.sh), and the
compiled TypeScript package exports a class for every resource of the schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from envvars_provider.schema import build

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_the_typescript_and_go_sdks_build() -> None:
    built = subprocess.run([str(REPO / "scripts" / "build-sdks.sh")], check=True, capture_output=True, text=True)
    package = Path(built.stdout.strip().splitlines()[-1])
    tokens = [token.split(":")[1:] for token in build()["resources"]]
    exported = subprocess.run(
        ["node", "-e", "const sdk = require(process.argv[1]);"
         " console.log(JSON.stringify(JSON.parse(process.argv[2]).map(([m, r]) => typeof sdk[m][r])))",
         str(package), json.dumps(tokens)],
        check=True, capture_output=True, text=True,
    )
    assert json.loads(exported.stdout) == ["function"] * len(tokens)

"""The Vers example's story, the same in every language: what `test_example_<language>.py` runs.

The program (examples/vers-<language>) makes one env-var set and two VMs booted with it, `envRevision`
fed the set's `revision`. Through the real CLI against the bundled server: `up` (each VM sees exactly the
set), a no-op `preview`, a one-value change previewed as a per-key update (values masked) that replaces
both VMs, `up` (the new VMs see the new value), `destroy`. No value appears in any command's output, the
exported stack, or (a secret config value) the backend's files.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

from envvars.envfile import parse
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.test_cli import distinctive, plaintext_in_state, token

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def seen(api: Api, vm_id: str) -> dict[str, str]:
    """What the VM sees in its /etc/environment."""
    read = api.get(f"/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"})
    assert read.status_code == 200, read.text
    return parse(base64.b64decode(read.json()["content_b64"]).decode())


def live_vms(api: Api) -> set[str]:
    return {vm["vm_id"] for vm in api.get("/api/v1/vm").json()}


def run_the_story(language: str, tmp_path: Path, server: ServerProcess, api: Api) -> None:
    """examples/vers-LANGUAGE from first `up` to `destroy`, as a user runs it."""
    ws = Workspace(tmp_path, EXAMPLES / f"vers-{language}", server.url, token(api))
    database_url, greeting = distinctive("postgres://app:s3cr3t"), distinctive("hello again")
    ws.set_config("databaseUrl", database_url, secret=True)
    outputs: list[subprocess.CompletedProcess[str]] = []

    outputs.append(ws.up())
    first = ws.outputs()
    assert first["revision"] == 1
    expected = {"APP_ENV": "demo", "GREETING": "hello, world", "DATABASE_URL": database_url}
    assert api.get("/api/v1/env_vars").json()["vars"] == expected
    assert {vm_id: seen(api, vm_id) for vm_id in first["vm_ids"]} == dict.fromkeys(first["vm_ids"], expected)

    outputs.append(ws.preview("--expect-no-changes"))

    ws.set_config("greeting", greeting)
    change = ws.preview()
    outputs.append(change)
    assert re.search(r"~ vars: \{\n\s+~ GREETING: \[secret\] => \[secret\]\n\s+\}", change.stdout), change.stdout
    assert change.stdout.count("+-envvars:vers:Vm: (replace)") == 2, change.stdout

    outputs.append(ws.up())
    second = ws.outputs()
    assert second["revision"] == 2
    assert not set(first["vm_ids"]) & live_vms(api)
    assert [seen(api, vm_id) for vm_id in second["vm_ids"]] == [{**expected, "GREETING": greeting}] * 2

    values = [database_url, greeting]
    assert not [value for value in values for result in outputs if value in result.stdout + result.stderr]
    assert not [value for value in values if value in ws.export()]
    # The backend's files too (its update history keeps plain config values, such as the greeting, as given).
    assert plaintext_in_state(tmp_path, [database_url]) == []

    outputs.append(ws.destroy())
    assert not set(second["vm_ids"]) & live_vms(api)
    assert api.get("/api/v1/env_vars").json()["vars"] == {}

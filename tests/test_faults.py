"""The provider under server faults: 500s, 429 with Retry-After, reset connections, stalls past the client timeout.

The reference server runs with `--faults` (test-only) and a plan armed before `pulumi up`. That up
must have the plan's outcome (`FIRST_UP`): faults the provider retries leave it succeeding, a server
that answers 503 to everything makes it fail naming the request and the status. Then, faults off,
the next up converges: the account holds exactly the program's variables, the server exactly the
VMs the state knows (nothing duplicated, nothing orphaned), and a preview shows no changes.

Stalls are aimed at the env-var routes; a VM create whose answer comes after the client gave up
is adopted by the provider through the request's own label, so it leaves no orphan VM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import arm, injected
from tests.figures import figure, scaled

pytestmark = pytest.mark.slow

FLEET = Path(__file__).resolve().parent / "programs" / "fleet"
# A POST is retried on 429 only (tests/test_retries.py): the 500 and reset plans spare it, so the up must succeed.
IDEMPOTENT = ["GET", "PUT", "DELETE"]
PLANS: dict[str, dict[str, Any]] = {
    "500": {"kind": "status", "status": 500, "count": 6, "every": 3, "methods": IDEMPOTENT},
    "503 on every request": {"kind": "status", "status": 503, "count": 10_000},
    "429 with Retry-After": {"kind": "status", "status": 429, "retry_after": 1, "count": 4, "every": 3},
    "connection reset": {"kind": "reset", "count": 6, "every": 3, "methods": IDEMPOTENT},
    "stall past the client timeout": {"kind": "stall", "seconds": 4, "count": 2, "every": 5,
                                      "path_prefix": "/api/v1/env_vars"},
    # The server makes the VM after the client gave up: the provider must adopt it, not make a second.
    "VM create answered after the client timeout": {"kind": "late", "seconds": 4, "count": 1, "methods": ["POST"],
                                                    "path_prefix": "/api/v1/vm"},
}
# What the first up must end with, retries on: None when it succeeds, else what its error names.
FIRST_UP: dict[str, str | None] = {
    "500": None,
    "503 on every request": "/api/v1/env_vars failed with HTTP 503",
    "429 with Retry-After": None,
    "connection reset": None,
    "stall past the client timeout": None,
    "VM create answered after the client timeout": None,
}
CLIENT_TIMEOUT_S = "2"


def test_faults_are_off_without_the_switch(server: ServerProcess) -> None:
    assert requests.post(server.url + "/_faults", json={"faults": []}, timeout=10).status_code == 404


@pytest.mark.parametrize("plan", list(PLANS), ids=list(PLANS))
def test_up_under_faults_then_converges(tmp_path: Path, faulty_server: ServerProcess, plan: str) -> None:
    count, vms = scaled(20, 100), 1
    token = faulty_server.token(f"faults-{plan}")
    ws = Workspace(tmp_path, FLEET, faulty_server.url, token)
    ws.env["ENVVARS_HTTP_TIMEOUT"] = CLIENT_TIMEOUT_S
    for key, value in {"count": str(count), "prefix": "F", "vms": str(vms)}.items():
        ws.set_config(key, value)
    headers = {"Authorization": f"Bearer {token}"}
    before = injected(faulty_server)

    arm(faulty_server, PLANS[plan])
    first = ws.up("--parallel", "8", check=False)
    arm(faulty_server)
    faults = injected(faulty_server) - before
    output = first.stdout + first.stderr
    assert "Traceback" not in output
    if FIRST_UP[plan] is None:
        assert first.returncode == 0, output[-3000:]
    else:
        # A clear message: the request and the status; never a Python traceback.
        assert first.returncode != 0, output[-3000:]
        assert FIRST_UP[plan] in output, output[-3000:]

    ws.up("--parallel", "8")
    stored = requests.get(faulty_server.url + "/api/v1/env_vars", headers=headers, timeout=30).json()["vars"]
    live = {vm["vm_id"] for vm in requests.get(faulty_server.url + "/api/v1/vm", headers=headers, timeout=30).json()}
    state = json.loads(ws.export())["deployment"]["resources"]
    in_state = {r["outputs"]["vmId"] for r in state if r["type"] == "envvars:vers:Vm"}
    preview = json.loads(ws.run("preview", "--json").stdout)["changeSummary"]
    figure(f"faults: {plan}", faults_injected=faults, first_up="ok" if first.returncode == 0 else "failed clearly",
           resources=count + vms, orphaned_vms=len(live - in_state), missing_vms=len(in_state - live),
           wrong_keys=len(set(stored) ^ {f"F_{n}" for n in range(count)}))
    assert faults > 0
    assert stored == {f"F_{n}": f"v{n}" for n in range(count)}
    assert live == in_state and len(live) == vms
    assert preview == {"same": count + vms + 1}
    ws.destroy()
    assert requests.get(faulty_server.url + "/api/v1/vm", headers=headers, timeout=30).json() == []

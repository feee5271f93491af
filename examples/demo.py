"""The main job: `pulumi up` the Vers example against the bundled server, then look inside each VM.

Starts the reference server on a free loopback port with a temp data dir, creates a token, runs
`pulumi up --yes` on examples/vers-python with a local file backend, prints what each VM sees in
its /etc/environment (keys shown, values masked), and stops the server.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envvars.envfile import parse  # noqa: E402
from envvars_server.launch import ServerProcess  # noqa: E402
from examples.workspace import Workspace  # noqa: E402

PROGRAM = Path(__file__).resolve().parent / "vers-python"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="envvars-demo-") as tmp, ServerProcess(Path(tmp) / "data") as server:
        token = server.token("demo")
        print(f"reference server on {server.url}; running `pulumi up` on examples/{PROGRAM.name}", flush=True)
        workspace = Workspace(Path(tmp), PROGRAM, server.url, token)
        print(workspace.up().stdout, flush=True)
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        stored = api.get(f"{server.url}/api/v1/env_vars", timeout=30).json()["vars"]
        ok = True
        for vm_id in workspace.outputs()["vm_ids"]:
            read = api.get(f"{server.url}/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"}, timeout=30)
            read.raise_for_status()
            seen = parse(base64.b64decode(read.json()["content_b64"]).decode())
            print(f"VM {vm_id} sees in /etc/environment (values masked):")
            for key in sorted(seen):
                print(f"  {key}=****")
            same = seen == stored
            ok = ok and same
            print(f"  -> {'exactly' if same else 'NOT'} the set stored at boot ({len(seen)} variables)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

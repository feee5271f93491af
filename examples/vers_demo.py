"""Boot-time injection, end to end: set variables, boot a VM, read its /etc/environment.

Starts the reference server on a free loopback port with a temp data dir, creates a token,
sets a few variables through the Vers API, boots a VM and prints what the VM sees — keys shown,
values masked — then stops the server.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

import requests
from envvars_server.launch import ServerProcess

from envvars.envfile import parse

DEMO_VARS = {
    "APP_ENV": "demo",
    "GREETING": "hello, world",
    "TRICKY": "quotes ' \" $HOME # not a comment \\ = ünïcødé",
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="envvars-demo-") as tmp, ServerProcess(Path(tmp)) as server:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {server.token('demo')}"
        print(f"server: {server.url} (data dir in a temp folder)")
        stored = api.put(f"{server.url}/api/v1/env_vars", json={"vars": DEMO_VARS}, timeout=30)
        stored.raise_for_status()
        print(f"PUT /api/v1/env_vars -> {stored.status_code}, {len(stored.json()['vars'])} variables set")
        created = api.post(f"{server.url}/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}}, timeout=60)
        created.raise_for_status()
        vm_id = created.json()["vm_id"]
        state = api.get(f"{server.url}/api/v1/vm/{vm_id}/metadata", timeout=30).json()["state"]
        print(f"POST /api/v1/vm/new_root -> VM {vm_id} is {state}")
        read = api.get(f"{server.url}/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"}, timeout=30)
        read.raise_for_status()
        seen = parse(base64.b64decode(read.json()["content_b64"]).decode())
        print("/etc/environment inside the VM (values masked):")
        for key in sorted(seen):
            print(f"  {key}=****")
        verdict = "exactly the set" if seen == DEMO_VARS else "DIFFERENT from the set"
        print(f"the VM sees {len(seen)} variables: {verdict} that was stored before boot")
        api.delete(f"{server.url}/api/v1/vm/{vm_id}", timeout=30).raise_for_status()
        return 0 if seen == DEMO_VARS else 1


if __name__ == "__main__":
    sys.exit(main())

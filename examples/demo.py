"""The main job: the Vers example against the bundled server, from first `up` to a changed value.

Starts the reference server on a free loopback port with a temp data dir, creates a token, and
with a local file backend:
1. `pulumi up` on examples/vers-python: one env-var set and two VMs booted with it; prints what
   each VM sees in its /etc/environment (keys shown, values masked);
2. changes one value (`greeting`) and prints `pulumi preview --diff`: one key of the set updated
   in place, and both VMs to be replaced (a VM receives the set only at boot);
3. `pulumi up` again, then shows that the old VMs are gone and the new ones see the new value
   while every other variable is unchanged.
Exits non-zero if any VM sees something else than the story says.

With `--cluster` (`make demo-cluster`) the same story runs against three replicas of the server on one
PostgreSQL (a throwaway one, initdb into a temp dir), through HAProxy in front of them: each VM runs on
the replica that created it, and whichever replica a request reaches answers for it.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envvars.envfile import parse  # noqa: E402
from envvars_server.cluster.local import LocalCluster  # noqa: E402
from envvars_server.launch import ServerProcess  # noqa: E402
from examples.workspace import Workspace  # noqa: E402

PROGRAM = Path(__file__).resolve().parent / "vers-python"
CHANGED_KEY, NEW_VALUE = "GREETING", "hello again, world"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


class Demo:
    """One server, one user, one stack of the example."""

    def __init__(self, server: ServerProcess | LocalCluster, tmp: Path):
        token = server.token("demo")
        self.url = server.url
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.workspace = Workspace(tmp, PROGRAM, server.url, token)

    def seen(self, vm_id: str) -> dict[str, str]:
        """What the VM sees in its /etc/environment."""
        read = self.api.get(f"{self.url}/api/v1/vm/{vm_id}/files", params={"path": "/etc/environment"}, timeout=30)
        read.raise_for_status()
        return parse(base64.b64decode(read.json()["content_b64"]).decode())

    def live_vms(self) -> set[str]:
        return {vm["vm_id"] for vm in self.api.get(f"{self.url}/api/v1/vm", timeout=30).json()}

    def show_vms(self) -> dict[str, dict[str, str]]:
        """Print each VM of the stack and the keys it sees (values masked); return what each sees."""
        outputs = self.workspace.outputs()
        seen = {vm_id: self.seen(vm_id) for vm_id in outputs["vm_ids"]}
        print(f"revision of the set: {outputs['revision']}")
        for vm_id, variables in seen.items():
            print(f"VM {vm_id} sees in /etc/environment: " + ", ".join(f"{key}=****" for key in sorted(variables)))
        return seen


def run(demo: Demo) -> bool:
    ws = demo.workspace
    step(f"1. pulumi up: examples/{PROGRAM.name} against the reference server on {demo.url}")
    print(ws.up().stdout, flush=True)
    before = demo.show_vms()
    stored = demo.api.get(f"{demo.url}/api/v1/env_vars", timeout=30).json()["vars"]
    ok = all(variables == stored for variables in before.values())
    print(f"-> each VM sees exactly the set stored at its boot: {ok}")

    step(f"2. one value changes ({CHANGED_KEY}): pulumi preview --diff")
    ws.set_config("greeting", NEW_VALUE)
    print(ws.preview().stdout, flush=True)

    step("3. pulumi up: the set is updated in place and the VMs replaced")
    print(ws.up().stdout, flush=True)
    after = demo.show_vms()
    gone = set(before) & demo.live_vms()
    print(f"-> old VMs still running: {len(gone)} of {len(before)}")
    reference = next(iter(before.values()))
    for vm_id, variables in after.items():
        changed = sorted(key for key in variables.keys() | reference.keys() if variables.get(key) != reference.get(key))
        new_value = variables.get(CHANGED_KEY) == NEW_VALUE
        print(f"-> VM {vm_id}: changed keys {changed}; {CHANGED_KEY} holds the new value: {new_value}")
        ok = ok and changed == [CHANGED_KEY] and new_value
    ok = ok and not gone and not set(after) & set(before)
    print(f"\n{'OK' if ok else 'FAILED'}: a changed value reached exactly the VMs booted after the change")
    return ok


def on_cluster(tmp: Path) -> bool:
    """The story through HAProxy in front of three replicas on a throwaway PostgreSQL."""
    from tests.postgres import PostgresServer

    postgres = PostgresServer()
    try:
        with LocalCluster(tmp / "cluster", postgres.new_database()) as cluster:
            step(f"a cluster: PostgreSQL on port {postgres.port}; replicas on "
                 + ", ".join(replica.url for replica in cluster.replicas) + f"; HAProxy on {cluster.url}")
            return run(Demo(cluster, tmp))
    finally:
        postgres.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="envvars-demo-") as tmp:
        if "--cluster" in sys.argv[1:]:
            return 0 if on_cluster(Path(tmp)) else 1
        with ServerProcess(Path(tmp) / "data") as server:
            return 0 if run(Demo(server, Path(tmp))) else 1


if __name__ == "__main__":
    sys.exit(main())

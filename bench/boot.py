"""boot_injection: `new_root` until `running` with a 100-variable set injected, vs the same boot with an
empty set; then 100 VMs booted at once, each checked for the right `/etc/environment`.

Both boots take the same path (the empty set is still written, as an empty file), so the added
time is what carrying the variables costs: reading the set, rendering it, one larger `WriteFile`.
The clock covers `POST /api/v1/vm/new_root?wait_boot=true`, which answers once the VM is running.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench.common import Figure, Settings, alternate, figure_of, median, timed
from envvars.envfile import render
from envvars_server.launch import ServerProcess

API = "/api/v1"
VARIABLES = {f"BENCH_VAR_{n:03d}": f"value {n}: postgres://user@db-{n}.internal/app?x=$y#z" for n in range(100)}


class Account:
    """One user's session against the server."""

    def __init__(self, server: ServerProcess, user: str, variables: dict[str, str]):
        self.url = server.url + API
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {server.token(user)}"
        self.call("PUT", "/env_vars", json={"vars": variables, "replace": True})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; fail on an error status; the JSON body, if any."""
        response = self.session.request(method, self.url + path, timeout=120, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def new_root(self, wait: bool) -> str:
        """A new root VM's id."""
        return str(self.call("POST", "/vm/new_root", params={"wait_boot": str(wait).lower()},
                             json={"vm_config": {}})["vm_id"])

    def environment(self, vm_id: str) -> bytes:
        """The VM's /etc/environment."""
        read = self.call("GET", f"/vm/{vm_id}/files", params={"path": "/etc/environment"})
        return base64.b64decode(read["content_b64"])


def boot_once(account: Account, ids: list[str]) -> float:
    """Seconds of one `new_root` with wait_boot; the VM is kept in `ids` for deletion later."""
    return timed(lambda: ids.append(account.new_root(wait=True)))


def boot_many(account: Account, count: int) -> tuple[float, int]:
    """Boot `count` VMs at once; the wall time until all run, and how many saw exactly the set."""
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _: account.new_root(wait=False), range(count)))
    deadline = time.monotonic() + 300
    while True:
        states = {vm["vm_id"]: vm["state"] for vm in account.call("GET", "/vm")}
        if all(states.get(vm_id) != "booting" for vm_id in ids) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - start
    expected = render(VARIABLES).encode()
    with ThreadPoolExecutor(8) as pool:
        right = sum(pool.map(lambda vm_id: states.get(vm_id) == "running"
                             and account.environment(vm_id) == expected, ids))
        list(pool.map(lambda vm_id: account.call("DELETE", f"/vm/{vm_id}"), ids))
    return wall, right


def run(settings: Settings) -> list[Figure]:
    """Two figures: the added boot time, and the concurrent boot."""
    # One user boots 100 VMs, 16 requests at a time: above the per-user defaults (20 VMs, 8 in flight).
    limits = ["--max-vms-per-user", "200", "--vm-ops-per-user", "16"]
    with (settings.tmp / "server.log").open("w") as log, \
            ServerProcess(settings.tmp / "data", log=log, args=limits) as server:
        injected, empty = Account(server, "injected", VARIABLES), Account(server, "empty", {})
        ids: dict[Account, list[str]] = {injected: [], empty: []}
        subjects, baselines = alternate(lambda: boot_once(injected, ids[injected]),
                                        lambda: boot_once(empty, ids[empty]), n=settings.pick(15, 2), warmup=1)
        if any(injected.environment(vm_id) != render(VARIABLES).encode() for vm_id in ids[injected][-2:]):
            raise AssertionError("a VM did not get the set")
        for account, vm_ids in ids.items():
            for vm_id in vm_ids:
                account.call("DELETE", f"/vm/{vm_id}")
        count = settings.pick(100, 5)
        wall, right = boot_many(injected, count)
    added = figure_of("boot_injection", "added", subjects, baselines, "ms", scale=1000, limit=5,
                      note=f"{len(VARIABLES)} variables vs an empty set")
    many = Figure("boot_injection.concurrent", right, wall, median(subjects) * count, count, "s", kind="count",
                  target=f"all {count} VMs with the right file", met=right == count,
                  note=f"value: VMs that saw exactly the set; subject: wall time of {count} VMs booted at once; "
                       f"baseline: {count} x one boot alone")
    return [added, many]

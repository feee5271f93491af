"""requests_per_change: HTTP requests the provider sends for each step of a set's life, counted at the
server (one access-log line per request), through the real engine, for each platform's set resource.

Steps, on a fresh stack: `pulumi up` creating a 200-key set; `pulumi up` after one value changed;
(Hoody) `pulumi up` after one key removed; `pulumi refresh`. The baseline is the physical limit, one
round trip per step: Vers writes a set in one PUT, Hoody merges up to 200 keys in one PATCH and
removes a key with one DELETE.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.common import PROGRAMS, Figure, Settings, figure_of
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace

KEYS = 200
ACCESS_LINE = re.compile(r'"(GET|PUT|POST|PATCH|DELETE) /api/v1/')  # the platforms' routes, not /_envvars


def requests_during(log: Path, step: Callable[[], Any]) -> int:
    """The API requests the server logged while `step` ran."""
    offset = log.stat().st_size
    step()
    with log.open() as lines:
        lines.seek(offset)
        return sum(1 for line in lines if ACCESS_LINE.search(line))


def run(settings: Settings) -> list[Figure]:
    """One figure per platform and step."""
    steps: dict[str, list[float]] = {}
    log_path = settings.tmp / "server.log"
    with log_path.open("w") as log, ServerProcess(settings.tmp / "data", log=log, access_log=True) as server:
        for rep in range(settings.pick(3, 1)):
            for name, (program, life) in PLATFORMS.items():
                token = server.token(f"bench-{name}-{rep}")
                home = settings.tmp / f"{name}-{rep}"
                home.mkdir()
                stack = Workspace(home, PROGRAMS / program, server.url, token)
                stack.run("config", "set", "count", str(KEYS))
                for step, count in life(stack, server.url, token, log_path).items():
                    steps.setdefault(f"{name}.{step}", []).append(count)
    return [figure_of(f"requests_per_change.{step}", "count", counts, [1.0] * len(counts), "requests", limit=1,
                      note="baseline: one round trip")
            for step, counts in steps.items()]


def _get(url: str, token: str) -> Any:
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def vers_life(stack: Workspace, url: str, token: str, log: Path) -> dict[str, int]:
    """An account's set: created, one value changed, refreshed."""
    counts = {"create_200": requests_during(log, stack.up)}
    stack.run("config", "set", "changed", "true")
    counts["change_1"] = requests_during(log, stack.up)
    counts["refresh"] = requests_during(log, partial(stack.run, "refresh", "--yes", "--skip-preview"))
    stored = _get(f"{url}/api/v1/env_vars", token)["vars"]
    if len(stored) != KEYS or stored["BENCH_KEY_000"] != "changed":
        raise AssertionError(f"the server holds {len(stored)} keys, not the {KEYS} of the program")
    return counts


def hoody_life(stack: Workspace, url: str, token: str, log: Path) -> dict[str, int]:
    """A container's map: created, one value changed, one key removed, refreshed."""
    made = requests.post(f"{url}/_envvars/v1/workloads", json={"platform": "hoody", "name": "bench"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
    made.raise_for_status()
    container = made.json()["id"]
    stack.run("config", "set", "containerId", container)
    counts = {"create_200": requests_during(log, stack.up)}
    stack.run("config", "set", "changed", "true")
    counts["change_1"] = requests_during(log, stack.up)
    stack.run("config", "set", "removed", "true")
    counts["remove_1"] = requests_during(log, stack.up)
    counts["refresh"] = requests_during(log, partial(stack.run, "refresh", "--yes", "--skip-preview"))
    stored = _get(f"{url}/api/v1/containers/{container}/env", token)["data"]["environment_vars"]
    if len(stored) != KEYS - 1 or stored["BENCH_KEY_000"] != "changed":
        raise AssertionError(f"the container holds {len(stored)} keys, not the {KEYS - 1} of the program")
    return counts


PLATFORMS: dict[str, tuple[str, Callable[[Workspace, str, str, Path], dict[str, int]]]] = {
    "vers": ("envvars-200", vers_life),
    "hoody": ("hoody-200", hoody_life),
}

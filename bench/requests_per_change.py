"""requests_per_change: HTTP requests the provider sends for each step of an `EnvVars`' life, counted
at the server (one access-log line per request), through the real engine.

Steps, on a fresh stack: `pulumi up` creating a 200-key set; `pulumi up` after one value changed;
`pulumi refresh`. The baseline is the physical limit, one round trip per step.
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
ACCESS_LINE = re.compile(r'"(GET|PUT|POST|PATCH|DELETE) /api/v1/')


def requests_during(log: Path, step: Callable[[], Any]) -> int:
    """The API requests the server logged while `step` ran."""
    offset = log.stat().st_size
    step()
    with log.open() as lines:
        lines.seek(offset)
        return sum(1 for line in lines if ACCESS_LINE.search(line))


def run(settings: Settings) -> list[Figure]:
    """Three figures, one per step."""
    steps: dict[str, list[float]] = {"create_200": [], "change_1": [], "refresh": []}
    log_path = settings.tmp / "server.log"
    with log_path.open("w") as log, ServerProcess(settings.tmp / "data", log=log, access_log=True) as server:
        for rep in range(settings.pick(3, 1)):
            token = server.token(f"bench-{rep}")
            home = settings.tmp / f"rep-{rep}"
            home.mkdir()
            stack = Workspace(home, PROGRAMS / "envvars-200", server.url, token)
            stack.run("config", "set", "count", str(KEYS))
            steps["create_200"].append(requests_during(log_path, stack.up))
            stack.run("config", "set", "changed", "true")
            steps["change_1"].append(requests_during(log_path, stack.up))
            steps["refresh"].append(requests_during(log_path, partial(stack.run, "refresh", "--yes", "--skip-preview")))
            stored = requests.get(f"{server.url}/api/v1/env_vars", headers={"Authorization": f"Bearer {token}"},
                                  timeout=30).json()["vars"]
            if len(stored) != KEYS or stored["BENCH_KEY_000"] != "changed":
                raise AssertionError(f"the server holds {len(stored)} keys, not the {KEYS} of the program")
    return [figure_of(f"requests_per_change.{step}", "count", counts, [1.0] * len(counts), "requests", limit=1,
                      note="baseline: one round trip")
            for step, counts in steps.items()]

"""requests_per_change: HTTP requests the provider sends for each step of a set's life, counted at the
server (one access-log line per request), through the real engine, for each platform's set resource.

Steps, on a fresh stack: `pulumi up` creating a 200-key set (Vertra: 25, an app's limit); `pulumi up` after
one value changed; (Hoody, Sevalla, Vertra, Phala) `pulumi up` after one key removed; `pulumi refresh`. The
baseline is the physical limit: one round trip per step where the API takes a whole set (Vers writes a set in
one PUT, Hoody merges up to 200 keys in one PATCH and removes a key with one DELETE, Vertra upserts any keys in
one PUT and removes any in one DELETE), one per variable where it takes one variable a request (Sevalla: 200
POSTs, N PUTs for N changed values, a list page per 100 variables); Phala's sealed whole set takes three a
write (the app's key, the PATCH, a read of the CVM running again) and two a refresh (the CVM, its allowed keys).

Sevalla's requests are independent, so the provider sends them 8 at a time: `sevalla.wall_N` times the
provider's update of N changed variables (its gRPC Update, the server's access log showing N requests)
against the same N PUTs sent one after another, alternated in the same run, with every request held at
the server for a simulated network round trip (a `stall` fault): loopback alone has none to overlap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.common import PROGRAMS, Figure, Settings, alternate, figure_of, ratio_figure, timed
from envvars_provider.protos import provider_pb2
from envvars_provider.values import to_struct
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.plugin import Plugin, secret, urn

KEYS = 200
VERTRA_KEYS = 25  # the most a Vertra app holds
PHALA_ROUNDS = {"create_200": 3, "change_1": 3, "remove_1": 3, "refresh": 2}
ACCESS_LINE = re.compile(r'"(GET|PUT|POST|PATCH|DELETE) /(api/v1|v3|v1)/')  # the platforms' routes, not /_envvars
Steps = dict[str, tuple[int, int]]  # step → (requests counted, the baseline's round trips)
Life = Callable[[Workspace, str, str, Path], Steps]


def requests_during(log: Path, step: Callable[[], Any]) -> int:
    """The API requests the server logged while `step` ran."""
    offset = log.stat().st_size
    step()
    with log.open() as lines:
        lines.seek(offset)
        return sum(1 for line in lines if ACCESS_LINE.search(line))


def run(settings: Settings) -> list[Figure]:
    """One figure per platform and step, and Sevalla's wall time against sequential requests."""
    steps: dict[str, list[tuple[int, int]]] = {}
    log_path = settings.tmp / "server.log"
    with log_path.open("w") as log, ServerProcess(settings.tmp / "data", log=log, access_log=True,
                                                  args=["--faults"]) as server:
        for rep in range(settings.pick(3, 1)):
            for name, (program, keys, life) in PLATFORMS.items():
                token = server.token(f"bench-{name}-{rep}")
                home = settings.tmp / f"{name}-{rep}"
                home.mkdir()
                stack = Workspace(home, PROGRAMS / program, server.url, token)
                stack.run("config", "set", "count", str(keys))
                for step, counted in life(stack, server.url, token, log_path).items():
                    steps.setdefault(f"{name}.{step}", []).append(counted)
        figures = [_count_figure(step, counted) for step, counted in steps.items()]
        figures.append(sevalla_wall(settings, server, log_path))
    return figures


def _count_figure(step: str, counted: list[tuple[int, int]]) -> Figure:
    baseline = counted[0][1]
    note = "baseline: one round trip" if baseline == 1 else f"baseline: {baseline} round trips"
    return figure_of(f"requests_per_change.{step}", "count", [float(n) for n, _ in counted],
                     [float(b) for _, b in counted], "requests", limit=baseline, note=note)


def _get(url: str, token: str) -> Any:
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def vers_life(stack: Workspace, url: str, token: str, log: Path) -> Steps:
    """An account's set: created, one value changed, refreshed."""
    counts = {"create_200": requests_during(log, stack.up)}
    stack.run("config", "set", "changed", "true")
    counts["change_1"] = requests_during(log, stack.up)
    counts["refresh"] = requests_during(log, partial(stack.run, "refresh", "--yes", "--skip-preview"))
    stored = _get(f"{url}/api/v1/env_vars", token)["vars"]
    if len(stored) != KEYS or stored["BENCH_KEY_000"] != "changed":
        raise AssertionError(f"the server holds {len(stored)} keys, not the {KEYS} of the program")
    return {step: (count, 1) for step, count in counts.items()}


def map_life(platform: str, place: str, keys: int, read: Callable[[str, str, str], dict[str, str]],
             rounds: Mapping[str, int] | None = None) -> Life:
    """The life of a resource managing keys of one workload's set (`place`: its config key), written in bulk:
    created, one value changed, one key removed, refreshed; `read(url, token, workload)` gives the stored set;
    `rounds`: the baseline's round trips of a step where it is more than one."""

    def life(stack: Workspace, url: str, token: str, log: Path) -> Steps:
        workload = _workload(url, token, platform)
        stack.run("config", "set", place, workload)
        counts = {f"create_{keys}": requests_during(log, stack.up)}
        stack.run("config", "set", "changed", "true")
        counts["change_1"] = requests_during(log, stack.up)
        stack.run("config", "set", "removed", "true")
        counts["remove_1"] = requests_during(log, stack.up)
        counts["refresh"] = requests_during(log, partial(stack.run, "refresh", "--yes", "--skip-preview"))
        stored = read(url, token, workload)
        if len(stored) != keys - 1 or stored["BENCH_KEY_000"] != "changed":
            raise AssertionError(f"the {platform} workload holds {len(stored)} keys, not the {keys - 1} of the program")
        return {step: (count, (rounds or {}).get(step, 1)) for step, count in counts.items()}

    return life


def _hoody_vars(url: str, token: str, container: str) -> dict[str, str]:
    return dict(_get(f"{url}/api/v1/containers/{container}/env", token)["data"]["environment_vars"])


def _vertra_vars(url: str, token: str, app: str) -> dict[str, str]:
    return {item["key"]: item["value"] for item in _get(f"{url}/v1/apps/{app}/envs", token)["response"]}


def _cvm_vars(url: str, token: str, cvm: str) -> dict[str, str]:
    """The program's variables a login in the CVM sees (the provider waited for its restart)."""
    found = _get(f"{url}/_envvars/v1/workloads/{cvm}/environment", token)["vars"]
    return {key: value for key, value in found.items() if key.startswith("BENCH_KEY_")}


def _workload(url: str, token: str, platform: str) -> str:
    made = requests.post(f"{url}/_envvars/v1/workloads", json={"platform": platform, "name": "bench"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
    made.raise_for_status()
    return str(made.json()["id"])


def _sevalla_vars(url: str, token: str, app: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = _get(f"{url}/v3/applications/{app}/env-vars?limit=100&offset={len(found)}", token)["data"]
        found += page
        if len(page) < 100:
            return found


def sevalla_life(stack: Workspace, url: str, token: str, log: Path) -> Steps:
    """An application's variables: created, one value changed, 100 changed, one removed, refreshed."""
    app = _workload(url, token, "sevalla")
    stack.run("config", "set", "applicationId", app)
    counts = {"create_200": (requests_during(log, stack.up), KEYS)}
    stack.run("config", "set", "changed", "1")
    counts["change_1"] = (requests_during(log, stack.up), 1)
    stack.run("config", "set", "changed", "100")
    counts["change_100"] = (requests_during(log, stack.up), 100)
    stack.run("config", "set", "removed", "true")
    counts["remove_1"] = (requests_during(log, stack.up), 1)
    counts["refresh"] = (requests_during(log, partial(stack.run, "refresh", "--yes", "--skip-preview")),
                         -(-(KEYS - 1) // 100))  # one list page per 100 variables
    stored = {item["key"]: item["value"] for item in _sevalla_vars(url, token, app)}
    if len(stored) != KEYS - 1 or stored["BENCH_KEY_099"] != "changed-100":
        raise AssertionError(f"the application holds {len(stored)} keys, not the {KEYS - 1} of the program")
    return counts


def sevalla_wall(settings: Settings, server: ServerProcess, log: Path) -> Figure:
    """The provider's update of N changed variables (N requests, checked in the access log) vs N sequential PUTs,
    alternated, each request held a simulated round trip at the server."""
    count, rtt = settings.pick(100, 16), settings.pick(0.05, 0.01)
    token = server.token("bench-sevalla-wall")
    app = _workload(server.url, token, "sevalla")
    env_type = "envvars:sevalla:EnvVars"
    plugin = Plugin(settings.tmp / "plugin.stderr")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    try:
        plugin.configure(server.url, token)
        inputs = {"applicationId": app, "isRuntime": True, "isBuildtime": True}
        made = plugin.stub.Create(provider_pb2.CreateRequest(urn=urn(env_type, "wall"), type=env_type,
                                  properties=to_struct({**inputs, "vars": {f"K{n:03d}": "0" for n in range(count)}})))
        state = made.properties
        ids = [item["id"] for item in _sevalla_vars(server.url, token, app)]
        rounds = iter(range(1, 1_000))
        held = {"kind": "stall", "seconds": rtt, "path_prefix": "/v3/applications", "count": 1_000_000}
        requests.post(f"{server.url}/_faults", json={"faults": [held]}, timeout=10).raise_for_status()

        def provider_update() -> float:
            nonlocal state
            news = {**inputs, "vars": secret({f"K{n:03d}": f"provider-{next(rounds)}" for n in range(count)})}
            request = provider_pb2.UpdateRequest(id=app, urn=urn(env_type, "wall"), type=env_type, olds=state,
                                                 news=to_struct(news))
            answer: dict[str, Any] = {}

            def update() -> None:
                answer["seconds"] = timed(lambda: answer.update(response=plugin.stub.Update(request)))

            sent = requests_during(log, update)
            if sent != count:
                raise AssertionError(f"the provider sent {sent} requests for {count} changed variables")
            state = answer["response"].properties
            return float(answer["seconds"])

        def sequential() -> float:
            value = f"sequential-{next(rounds)}"

            def put_all() -> None:
                for var_id in ids:
                    session.put(f"{server.url}/v3/applications/{app}/env-vars/{var_id}", json={"value": value},
                                timeout=60).raise_for_status()
            return timed(put_all)

        subjects, baselines = alternate(provider_update, sequential, n=settings.pick(5, 1))
    finally:
        requests.delete(f"{server.url}/_faults", timeout=10)
        session.close()
        plugin.close()
    return ratio_figure("requests_per_change.sevalla.wall", subjects, baselines, "ms",
                        scale=1000, target=0.5, note=f"{count} changed variables, {count} requests, 8 at a time, vs "
                        f"{count} sequential PUTs; {rtt * 1000:.0f} ms round trip simulated at the server")


PLATFORMS: dict[str, tuple[str, int, Life]] = {  # name → (program, keys, life)
    "vers": ("envvars-200", KEYS, vers_life),
    "hoody": ("hoody-200", KEYS, map_life("hoody", "containerId", KEYS, _hoody_vars)),
    "sevalla": ("sevalla-200", KEYS, sevalla_life),
    "vertra": ("vertra-25", VERTRA_KEYS, map_life("vertra", "appId", VERTRA_KEYS, _vertra_vars)),
    # Phala: the app's key read before each seal, the whole set in one PATCH, a read seeing the CVM run again;
    # a refresh reads the CVM and its allowed keys.
    "phala": ("phala-200", KEYS, map_life("phala", "cvmId", KEYS, _cvm_vars, PHALA_ROUNDS)),
}

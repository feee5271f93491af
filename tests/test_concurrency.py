"""Concurrent writers: 16 clients at once on one server, then 200 resources through the engine with --parallel 32."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests.conftest import Api
from tests.figures import figure, scaled

CLIENTS = 16
SHARED_KEYS = [f"SHARED_{n}" for n in range(6)]
FLEET = Path(__file__).resolve().parent / "programs" / "fleet"


@dataclass
class Op:
    """One acknowledged write and when it ran; `values` maps each key to its new value, None for deleted."""

    start: float
    end: float
    values: dict[str, str | None] = field(default_factory=dict)


def client(api: Api, number: int, count: int, ops: list[Op], problems: list[str]) -> None:
    """Merges of own and shared keys, and single-key deletes, each value unique to this write."""
    rng = random.Random(number)
    own = [f"C{number}_K{n}" for n in range(4)]
    for n in range(count):
        start = time.monotonic()
        if rng.random() < 0.7:
            keys = rng.sample(own + SHARED_KEYS, rng.randint(1, 4))
            written = {key: f"c{number}-w{n}-{key}" for key in keys}
            response = api.put("/api/v1/env_vars", json={"vars": written, "replace": False})
            if response.status_code == 200 and not written.items() <= response.json()["vars"].items():
                problems.append(f"PUT answered a set without its own write: {response.text[:200]}")
            values: dict[str, str | None] = dict(written)
            acknowledged = response.status_code == 200
        else:
            key = rng.choice(own + SHARED_KEYS)
            response = api.delete(f"/api/v1/env_vars/{key}")
            values = {key: None}
            acknowledged = response.status_code in (204, 404)
        end = time.monotonic()
        if "locked" in response.text.lower() or not acknowledged:
            problems.append(f"{response.request.method} answered {response.status_code}: {response.text[:200]}")
            continue
        ops.append(Op(start, end, values))


def serializable_per_key(ops: list[Op], final: dict[str, str]) -> list[str]:
    """Keys whose final state no serial order of the acknowledged writes can produce.

    A write can be the last one to a key in some serial order consistent with real time unless
    another write to that key started after it ended; the final value must come from such a write.
    """
    wrong = []
    for key in {key for op in ops for key in op.values} | set(final):
        touching = [op for op in ops if key in op.values]
        last_candidates = [op for op in touching if not any(other.start > op.end for other in touching)]
        possible = {op.values[key] for op in last_candidates} or {None}
        if final.get(key) not in possible:
            wrong.append(key)
    return wrong


def test_sixteen_clients_merging_and_deleting_end_in_a_serial_order(new_api) -> None:
    count = scaled(150, 1500)
    apis = [new_api() for _ in range(CLIENTS)]
    token = apis[0].headers["Authorization"]
    for api in apis:
        api.headers["Authorization"] = token  # one account, sixteen clients
    ops: list[Op] = []
    problems: list[str] = []
    threads = [threading.Thread(target=client, args=(api, n, count, ops, problems)) for n, api in enumerate(apis)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = apis[0].get("/api/v1/env_vars").json()["vars"]
    wrong = serializable_per_key(ops, final)
    figure("concurrency (16 clients)", writes=CLIENTS * count, acknowledged=len(ops), errors=len(problems),
           keys_not_serializable=len(wrong))
    assert problems == []
    assert wrong == []


def test_the_serial_order_check_catches_a_lost_or_stale_write() -> None:
    first, second = Op(0.0, 1.0, {"A": "1"}), Op(2.0, 3.0, {"A": "2", "B": None})
    overlapping = Op(0.5, 2.5, {"A": "3"})
    assert serializable_per_key([first, second], {"A": "2"}) == []
    assert serializable_per_key([first, second], {"A": "1"}) == ["A"]  # stale: a later write was lost
    assert serializable_per_key([first, second], {"A": "2", "B": "x"}) == ["B"]  # deleted last, yet present
    assert serializable_per_key([first, second, overlapping], {"A": "3"}) == []  # concurrent with the last


def fleet_workspace(tmp_path: Path, server: ServerProcess, token: str, count: int, prefix: str) -> Workspace:
    """The fleet program: `count` single-variable resources `PREFIX_<n>`."""
    ws = Workspace(tmp_path, FLEET, server.url, token)
    ws.set_config("count", str(count))
    ws.set_config("prefix", prefix)
    return ws


@pytest.mark.slow
def test_two_hundred_resources_with_parallel_32_converge(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    count = scaled(200, 500)
    token = str(api.headers["Authorization"]).split()[1]
    ws = fleet_workspace(tmp_path, server, token, count, "FLEET")
    started = time.monotonic()
    ws.up("--parallel", "32")
    seconds = time.monotonic() - started
    stored = api.get("/api/v1/env_vars").json()["vars"]
    assert stored == {f"FLEET_{n}": f"v{n}" for n in range(count)}
    preview = json.loads(ws.run("preview", "--json").stdout)
    figure("engine --parallel 32", resources=count, up_seconds=round(seconds, 1),
           changes_after=sum(v for k, v in preview["changeSummary"].items() if k != "same"))
    assert preview["changeSummary"] == {"same": count + 1}
    ws.destroy("--parallel", "32")
    assert api.get("/api/v1/env_vars").json()["vars"] == {}

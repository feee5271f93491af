"""Restarts and crashes: nothing acknowledged is lost, no set is ever half-written."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import requests

from envvars.envfile import parse
from tests.conftest import Api, start_server
from tests.test_vers_vms import boot, env_file


def test_restart_keeps_tokens_vars_and_vms(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    token = server.token("durable")
    api = Api(server.url, token)
    api.put("/api/v1/env_vars", json={"vars": {"A": "first"}})
    running = boot(api)
    paused = boot(api)
    api.patch(f"/api/v1/vm/{paused}/state", json={"state": "Paused"})
    api.put("/api/v1/env_vars", json={"vars": {"A": "second"}})
    server.stop()

    server = start_server(tmp_path)
    try:
        api = Api(server.url, token)
        assert api.get("/api/v1/env_vars").json() == {"vars": {"A": "second"}}
        assert api.get(f"/api/v1/vm/{running}/metadata").json()["state"] == "running"
        assert api.get(f"/api/v1/vm/{paused}/metadata").json()["state"] == "paused"
        # Injected once at first boot: a restart does not re-inject the newer set.
        assert parse(env_file(api, running)) == {"A": "first"}
        assert api.post(f"/api/v1/vm/{running}/exec", json={"command": ["true"]}).json()["exit_code"] == 0
    finally:
        server.stop()


def test_kill_9_loses_no_acknowledged_write_and_never_mixes(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    server = start_server(tmp_path)
    token = server.token("crashy")
    for trial in range(5):
        api = Api(server.url, token)
        acknowledged: list[dict[str, str]] = []
        in_flight: list[dict[str, str]] = []

        def write(
            api: Api = api, trial: int = trial, acknowledged: list = acknowledged, in_flight: list = in_flight
        ) -> None:
            for n in range(10_000):
                full_set = {f"T{trial}_N{n}_K{i}": f"{n}" for i in range(20)}
                in_flight.append(full_set)
                try:
                    response = api.put("/api/v1/env_vars", json={"vars": full_set, "replace": True})
                except requests.ConnectionError:
                    return
                assert response.status_code == 200
                acknowledged.append(full_set)

        writer = threading.Thread(target=write)
        writer.start()
        threading.Event().wait(rng.uniform(0.05, 0.4))
        server.kill()
        writer.join()
        server = start_server(tmp_path)
        stored = Api(server.url, token).get("/api/v1/env_vars").json()["vars"]
        assert acknowledged, "the writer never got an answer before the kill"
        assert stored in (acknowledged[-1], in_flight[-1])
    server.stop()

"""Restarts and crashes: nothing acknowledged is lost, no set is ever half-written."""

from __future__ import annotations

import itertools
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import requests

from envvars.envfile import parse
from tests.conftest import Api, start_server
from tests.figures import figure, scaled
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


def writes(rng: random.Random, trial: int) -> Iterator[tuple[dict[str, str], bool]]:
    """An endless stream of PUTs: replace-all with a fresh full set, or a merge over old and new keys."""
    for n in itertools.count():
        replace = rng.random() < 0.5
        keys = [f"K{rng.randrange(40)}" for _ in range(rng.randint(1, 30 if replace else 8))]
        yield {key: f"t{trial}-w{n}-{key}" for key in keys}, replace


def test_kill_9_loses_no_acknowledged_write_and_never_mixes(tmp_path: Path) -> None:
    """Kill -9 at a random moment of a stream of replace-all PUTs and merges, then restart on the same data.

    The set after the restart must be the one the last acknowledged write left, or the one the write
    in flight would have left: never a mix, never older.
    """
    rng = random.Random(20261123)
    trials = scaled(50, 500)
    server = start_server(tmp_path)
    token = server.token("crashy")
    state: dict[str, str] = {}
    acknowledged_total = in_flight_committed = lost = 0
    try:
        for trial in range(trials):
            api = Api(server.url, token)
            acknowledged = [dict(state)]  # the set after each acknowledged write, the restart's set first
            in_flight: list[dict[str, str]] = []

            def write(api: Api = api, trial: int = trial, acknowledged: list = acknowledged,
                      in_flight: list = in_flight) -> None:
                for variables, replace in writes(random.Random(trial), trial):
                    after = dict(variables) if replace else {**acknowledged[-1], **variables}
                    in_flight.append(after)
                    try:
                        response = api.put("/api/v1/env_vars", json={"vars": variables, "replace": replace})
                    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                        return  # killed before the answer, or in the middle of it: not acknowledged
                    assert response.status_code == 200, response.text
                    assert response.json()["vars"] == after
                    acknowledged.append(after)

            writer = threading.Thread(target=write)
            writer.start()
            threading.Event().wait(rng.uniform(0.01, 0.25))
            server.kill()
            writer.join()
            api.close()
            server = start_server(tmp_path)
            with Api(server.url, token) as check:
                stored = check.get("/api/v1/env_vars").json()["vars"]
            with sqlite3.connect(tmp_path / "envvars.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            acknowledged_total += len(acknowledged) - 1
            if stored == acknowledged[-1]:
                pass
            elif in_flight and stored == in_flight[-1]:
                in_flight_committed += 1
            else:
                lost += 1
            state = stored
    finally:
        server.stop()
    figure("crash consistency (kill -9 during PUTs)", trials=trials, acknowledged_writes=acknowledged_total,
           in_flight_writes_committed=in_flight_committed, mixed_or_lost_sets=lost)
    assert lost == 0

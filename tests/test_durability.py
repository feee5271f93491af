"""Restarts and crashes, on every platform: nothing acknowledged is lost, no set is ever half-written, and a
workload comes back with the env of its last boot (`tests/platforms.py` says how each platform writes and boots)."""

from __future__ import annotations

import dataclasses
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from envvars.envfile import parse
from tests import platforms
from tests.conftest import Api, start_server
from tests.figures import figure
from tests.platforms import EnvSet
from tests.stores import check_store
from tests.test_vers_vms import boot, env_file


def test_restart_keeps_tokens_vars_and_vms(tmp_path: Path, database_url: str | None) -> None:
    server = start_server(tmp_path, database_url)
    token = server.token("durable")
    api = Api(server.url, token)
    api.put("/api/v1/env_vars", json={"vars": {"A": "first"}})
    running = boot(api)
    paused = boot(api)
    api.patch(f"/api/v1/vm/{paused}/state", json={"state": "Paused"})
    api.put("/api/v1/env_vars", json={"vars": {"A": "second"}})
    server.stop()

    server = start_server(tmp_path, database_url)
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


Write = tuple[str, dict[str, str]]  # ("merge" | "replace", variables) or ("delete", {key: ""})


KEYS = 40  # the keys the writes draw from, or fewer where the platform limits a set (`EnvSet.max_vars`)


def writes(rng: random.Random, trial: int, replaces: bool, per_variable: bool,
           keys_in_all: int = KEYS) -> Iterator[Write]:
    """An endless stream of writes: merges over old and new keys (one key each where the API writes one
    variable per request), deletes of one key, and (where the platform has it) replace-all with a fresh full set."""
    for n in itertools.count():
        roll = rng.random()
        if roll < 0.15:
            yield "delete", {f"K{rng.randrange(keys_in_all)}": ""}
            continue
        replace = replaces and roll < 0.55
        most = 30 if replace else 1 if per_variable else 8
        keys = [f"K{rng.randrange(keys_in_all)}" for _ in range(rng.randint(1, most))]
        yield ("replace" if replace else "merge"), {key: f"t{trial}-w{n}-{key}" for key in keys}


def after(before: dict[str, str], write: Write) -> dict[str, str]:
    """The set a write leaves."""
    kind, variables = write
    if kind == "delete":
        return {key: value for key, value in before.items() if key not in variables}
    return dict(variables) if kind == "replace" else {**before, **variables}


def send(env_set: EnvSet, write: Write) -> requests.Response:
    kind, variables = write
    if kind == "delete":
        return env_set.delete(next(iter(variables)))
    if kind == "merge":
        return env_set.merge(variables)
    request = env_set.replace_request(variables)
    assert request is not None
    return env_set.api.request(**request)


KILLED = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)  # no answer, or half of one
MIN_ACKNOWLEDGED_PER_CRASH = 1  # every kill lands after at least one acknowledged write...
MIN_ACKNOWLEDGED_MEAN = 8  # ...and ~30 on average on 2 cores: far fewer means the writer barely wrote
# (~9 where the API writes one variable per request: each write is a lookup and then the write, of a set kept
# encrypted; half the floor there). Where every write is slow, the kill waits for the kit's `writes_per_crash`.


@dataclass
class Writer:
    """What one writer thread sent and got back, for the main thread to check: it asserts nothing itself."""

    sent: list[Write] = field(default_factory=list)
    answers: list[requests.Response] = field(default_factory=list)
    error: BaseException | None = None  # what ended the stream
    error_at: float = 0.0  # time.monotonic() when it did
    done: bool = False
    answered: threading.Condition = field(default_factory=threading.Condition)  # notified at each answer and the end

    def wait_answers(self, count: int, timeout: float) -> bool:
        """Wait until the writer has `count` answers, or has stopped; whether it has them."""
        with self.answered:
            self.answered.wait_for(lambda: self.done or len(self.answers) >= count, timeout)
            return len(self.answers) >= count

    def run(self, env_set: EnvSet, trial: int) -> None:
        try:
            replaces = env_set.replace_request({}) is not None
            for write in writes(random.Random(trial), trial, replaces, env_set.per_variable,
                                min(KEYS, env_set.max_vars or KEYS)):
                self.sent.append(write)
                response = send(env_set, write)
                with self.answered:
                    self.answers.append(response)
                    self.answered.notify_all()
                if response.status_code >= 300 and response.status_code != 404:
                    return  # the main thread fails on it
        except BaseException as exc:  # noqa: BLE001 (handed to the main thread, which decides)
            self.error, self.error_at = exc, time.monotonic()
        finally:
            with self.answered:
                self.done = True
                self.answered.notify_all()


def acknowledged_sets(before: dict[str, str], writer: Writer, env_set: EnvSet) -> list[dict[str, str]]:
    """The set after each acknowledged write, `before` first; fails on any answer but the expected one."""
    sets = [before]
    for write, response in zip(writer.sent, writer.answers, strict=False):
        expected = after(sets[-1], write)
        if write[0] == "delete":
            answer = env_set.delete_answer(response)
            existed = next(iter(write[1])) in sets[-1]
            assert answer == "idempotent" or answer == ("removed" if existed else "absent"), (
                f"DELETE answered {response.status_code}: {response.text[:300]}")
        else:
            assert env_set.acknowledged(response), f"a write answered {response.status_code}: {response.text[:300]}"
        answered = env_set.merged(response)
        if answered is not None:  # the whole set, or where the API writes one variable per request, that variable
            made = {key: expected[key] for key in write[1]} if env_set.per_variable else expected
            assert answered == made, "a write answered a set other than the one it made"
        sets.append(expected)
    return sets


@pytest.mark.parametrize("platform", platforms.NAMES)
def test_kill_9_loses_no_acknowledged_write_and_never_mixes(tmp_path: Path, platform: str,
                                                           database_url: str | None, store_kind: str) -> None:
    """Kill -9 at a random moment of a stream of merges, deletes and (where the platform has them) replace-all
    writes to one set, then restart on the same data.

    The set after the restart must be the one the last acknowledged write left, or the one the write
    in flight would have left: never a mix, never older. The kill comes after the first acknowledged
    write of each trial (after the kit's `writes_per_crash`, where it has one); the writer's stream may only
    end in a connection error, after the kill was sent, and the server must have died of the SIGKILL (not of
    anything else).
    """
    rng = random.Random(20261123)
    trials = platforms.trials(platform, 25, 500, store=store_kind)
    waited = platforms.kit(platform).writes_per_crash  # acknowledged writes before each kill, where slow
    server = start_server(tmp_path, database_url)
    token = server.token("crashy")
    with Api(server.url, token) as api:
        env_set = platforms.kit(platform).env_set(api)
    state: dict[str, str] = {}
    per_crash: list[int] = []
    in_flight_committed = older = mixed = 0
    try:
        for trial in range(trials):
            writer = Writer()
            with Api(server.url, token) as api:
                thread = threading.Thread(target=writer.run, args=(dataclasses.replace(env_set, api=api), trial),
                                          daemon=True)
                thread.start()
                before_kill = waited or MIN_ACKNOWLEDGED_PER_CRASH
                assert writer.wait_answers(before_kill, 30 * before_kill), (
                    f"trial {trial}: not {before_kill} answers within {30 * before_kill} s: {writer.error!r}")
                threading.Event().wait(rng.uniform(0.0, 0.25))
                assert server.process is not None and server.process.poll() is None, (
                    f"trial {trial}: the server died before the kill: {writer.error!r}")
                kill_sent = time.monotonic()
                server.kill()
                thread.join(60)
                assert not thread.is_alive(), f"trial {trial}: the writer still runs after the kill"
            assert server.process.returncode == -signal.SIGKILL, server.process.returncode
            acknowledged = acknowledged_sets(state, writer, env_set)
            assert isinstance(writer.error, KILLED), f"trial {trial}: the writer stopped on {writer.error!r}"
            error_at = writer.error_at
            assert error_at >= kill_sent, f"trial {trial}: a connection error before the kill: {writer.error!r}"
            in_flight = None  # the set the write sent but not answered would have left
            if len(writer.sent) > len(writer.answers):
                in_flight = after(acknowledged[-1], writer.sent[-1])
            per_crash.append(len(acknowledged) - 1)

            server = start_server(tmp_path, database_url)
            with Api(server.url, token) as check:
                stored = dataclasses.replace(env_set, api=check).get()
            check_store(server)
            if stored == acknowledged[-1]:
                pass
            elif stored == in_flight:
                in_flight_committed += 1
            elif stored in acknowledged:
                older += 1
            else:
                mixed += 1
            state = stored
    finally:
        server.stop()
    figure(f"crash consistency {platform} on {store_kind} (kill -9 during writes)", trials=trials,
           acknowledged_writes=sum(per_crash),
           fewest_acknowledged_before_a_kill=min(per_crash, default=0),
           in_flight_writes_committed=in_flight_committed, lost_sets=older, mixed_sets=mixed)
    assert older == 0, f"{older} restarts came back with an older acknowledged set: acknowledged writes lost"
    assert mixed == 0, f"{mixed} restarts came back with a set no acknowledged or in-flight write left"
    assert len(per_crash) == trials
    assert min(per_crash) >= (waited or MIN_ACKNOWLEDGED_PER_CRASH)
    floor = waited or MIN_ACKNOWLEDGED_MEAN // (2 if env_set.per_variable else 1)
    assert sum(per_crash) >= floor * trials, f"only {sum(per_crash)} writes acknowledged"


@pytest.mark.parametrize("platform", platforms.NAMES)
def test_a_workload_comes_back_after_a_crash_with_the_env_of_its_boot(tmp_path: Path, platform: str,
                                                                      database_url: str | None) -> None:
    """A workload booted with a set, the set changed, then kill -9 and a restart on the same data: the stored set
    is the changed one, the workload runs again with the env of its last boot (not re-injected; where its env
    lived in memory only, as the kit says, it is gone, and the workload comes back with the stored set), and
    is out of sync (where the platform says) until it boots again with the stored set."""
    server = start_server(tmp_path, database_url)
    token = server.token("comes-back")
    kit = platforms.kit(platform)
    try:
        with Api(server.url, token) as api:
            env_set = kit.env_set(api)
            assert env_set.acknowledged(env_set.merge({"A": "first", "B": "kept"}))
            workload = env_set.apply()
            assert env_set.synced() in (True, None)
            assert env_set.acknowledged(env_set.merge({"A": "second"}))
            assert env_set.synced() in (False, None)
        server.kill()
        server = start_server(tmp_path, database_url)
        with Api(server.url, token) as api:
            env_set = dataclasses.replace(env_set, api=api)
            assert env_set.get() == {"A": "second", "B": "kept"}
            seen = api.get(f"{platforms.WORKLOADS}/{workload}/environment")
            assert seen.status_code == 200, seen.text
            booted = {"A": "second" if kit.recovers_with_stored_set else "first", "B": "kept"}
            assert {key: seen.json()["vars"].get(key) for key in "AB"} == booted
            assert env_set.synced() in (False, None)  # a write that changes nothing keeps it as it was
            again = env_set.apply()
            assert env_set.synced() in (True, None)
            seen = api.get(f"{platforms.WORKLOADS}/{again}/environment")
            assert {key: seen.json()["vars"].get(key) for key in "AB"} == {"A": "second", "B": "kept"}
            env_set.close()
    finally:
        server.stop()

"""Concurrency: 16 writers and 2 readers on one set of every platform (Vers' account set, a Hoody container's map,
a Sevalla application's variables, a Vertra app's), then 200 resources through the engine at --parallel 32 (Vers).

Where the API writes one variable per request (Sevalla), each write is one key: no write is multi-key, so there is
no half-applied write to look for; what stays is that no acknowledged write is lost, no read goes back, and no
read or answer shows a value no write carried. Where a set holds few variables (Vertra: 25), each client's group is
one key, so its multi-key writes (the group and shared keys) still show whether they were applied whole. Where every
write sends the whole set (Phala), the writers take turns (two at once would drop each other's keys, as on the real
platform), and the readers check that what the workload holds is always one write's set, whole."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from examples.workspace import Workspace
from tests import platforms
from tests.conftest import Api
from tests.figures import figure, scaled
from tests.platforms import EnvSet

CLIENTS = 16
READERS = 2  # GET the whole set in a loop while the clients write
GROUP = 4  # keys each client writes together in every PUT, all with the write's value
OWN = 4  # keys of each client's own it adds to some PUTs, or deletes
# Where the API writes one variable per request: fewer keys of each client's own, so the 16 clients' keys and the
# shared ones fit one page of the list (a read of several pages would be no snapshot).
PER_VARIABLE_GROUP, PER_VARIABLE_OWN = 2, 2
SHARED_KEYS = [f"SHARED_{n}" for n in range(6)]
FLEET = Path(__file__).resolve().parent / "programs" / "fleet"
VALUE = re.compile(r"c(\d+)-gen(\d+)")  # every value a write carries: its client and generation


def group(number: int, size: int = GROUP) -> list[str]:
    """Keys only client `number` writes, and never deletes."""
    return [f"C{number}_G{n}" for n in range(size)]


def value(number: int, generation: int) -> str:
    return f"c{number}-gen{generation}"


@dataclass
class Op:
    """One acknowledged write and when it ran; `values` maps each key to its new value, None for deleted."""

    start: float
    end: float
    values: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Run:
    """What the clients and readers share; lists and dicts only appended to or set, one key per writer."""

    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sent: dict[int, dict[int, set[str]]] = field(default_factory=dict)  # client -> generation -> keys PUT
    last_put: dict[int, int] = field(default_factory=dict)  # client -> generation of its last acknowledged PUT
    last_written: dict[str, str] = field(default_factory=dict)  # a group key -> its client's last acknowledged value
    absent_deletes: list[str] = field(default_factory=list)  # DELETEs answered 404: no write, not counted
    snapshots: list[int] = field(default_factory=lambda: [0, 0])  # sets checked: reads, PUT answers
    torn: list[str] = field(default_factory=list)  # what only a half-applied PUT explains
    phantoms: list[str] = field(default_factory=list)  # a value no write of that key carried
    stale: list[str] = field(default_factory=list)  # a read older than an earlier read of the same reader
    lock: threading.Lock = field(default_factory=threading.Lock)
    turns: threading.Lock = field(default_factory=threading.Lock)  # writers take turns where writes send whole sets


def sizes(env_set: EnvSet) -> tuple[int, int]:
    """How many keys each client writes as its group and as its own: fewer where the API writes one variable per
    request, and where the platform limits a set, as many as keep every client's keys and the shared ones within it."""
    if env_set.max_vars is not None:
        room = (env_set.max_vars - len(SHARED_KEYS)) // CLIENTS
        assert room >= 1, f"a set of {env_set.max_vars} cannot hold a key of each of {CLIENTS} clients"
        return 1, room - 1
    return (PER_VARIABLE_GROUP, PER_VARIABLE_OWN) if env_set.per_variable else (GROUP, OWN)


def torn_writes(snapshot: dict[str, str], sent: dict[int, dict[int, set[str]]], size: int = GROUP) -> list[str]:
    """What in one snapshot of the set only a half-applied PUT can explain.

    Every PUT of client c writes all of c's group, with the same value `c<c>-gen<g>`, plus some of
    c's other keys and of the keys all clients share; no one else writes that value or c's group, and
    c never deletes from its group. So in any snapshot of a serializable store, c's group is absent
    (before c's first PUT) or whole at one generation g; and a key holding c's value of generation h
    needs h <= g (a later PUT of c would have rewritten the group), and h == g when PUT g wrote that
    key (PUT g came after PUT h). Keys of other clients' writes are free: overlapping writes may win
    on different keys.
    """
    torn = []
    generation: dict[int, int] = {}
    for number in sent:
        values = {snapshot.get(key) for key in group(number, size)}
        if values == {None}:
            generation[number] = -1
        elif len(values) == 1 and (found := VALUE.fullmatch(str(next(iter(values))))) and int(found[1]) == number:
            generation[number] = int(found[2])
        else:
            torn.append(f"client {number}'s group mixes {sorted(map(str, values))}")
    for key, stored in snapshot.items():
        found = VALUE.fullmatch(stored)
        if not found or int(found[1]) not in generation:
            continue
        number, h = int(found[1]), int(found[2])
        g = generation[number]
        if h > g or (h < g and key in sent[number].get(g, set())):
            torn.append(f"{key} holds client {number}'s generation {h}, its group generation {g}")
    return torn


def phantom_values(snapshot: dict[str, str], sent: dict[int, dict[int, set[str]]]) -> list[str]:
    """The variables of a snapshot holding a value no write of that key carried: each value names its client and
    generation, and that write must have sent that key."""
    wrong = []
    for key, stored in snapshot.items():
        found = VALUE.fullmatch(stored)
        if not found or key not in sent.get(int(found[1]), {}).get(int(found[2]), set()):
            wrong.append(f"{key} holds {stored[:40]!r}, which no write of it carried")
    return wrong


def check(run: Run, snapshot: dict[str, str], kind: int, env_set: EnvSet) -> None:
    """Check a snapshot (a read, kind 0, or a write's answer, kind 1); for half-applied writes only where writes
    are multi-key, and only in whole sets (a per-variable write answers its variable alone)."""
    torn = [] if env_set.per_variable else torn_writes(snapshot, run.sent, sizes(env_set)[0])
    phantoms = phantom_values(snapshot, run.sent)
    with run.lock:
        run.snapshots[kind] += 1
        run.torn.extend(torn)
        run.phantoms.extend(phantoms)


def client(env_set: EnvSet, number: int, count: int, run: Run) -> None:
    """Merges of the client's whole group plus some own and shared keys (where the API writes one variable per
    request, of one of those keys), and single-key deletes of own and shared keys."""
    rng = random.Random(number)
    single = env_set.per_variable
    group_size, own_size = sizes(env_set)
    mine = group(number, group_size)
    own = [f"C{number}_K{n}" for n in range(own_size)]
    present: set[str] = set()  # own keys exist exactly when this client's last write to them was a merge
    turn = run.turns if env_set.whole_set else contextlib.nullcontext()  # a whole-set write reads, then writes
    try:
        for n in range(count):
            start = time.monotonic()
            if rng.random() < 0.7:
                if single:
                    keys = [rng.choice(mine + own + SHARED_KEYS)]
                else:
                    keys = mine + rng.sample(own + SHARED_KEYS, rng.randint(1, 4))
                    rng.shuffle(keys)  # a half-applied write splits the group wherever it splits the keys
                written = {key: value(number, n) for key in keys}
                run.sent[number][n] = set(keys)  # before the write: a reader may see it before the answer
                with turn:
                    response = env_set.merge(written)
                values: dict[str, str | None] = dict(written)
                answered = env_set.merged(response)
                acknowledged = answered is not None
                if answered is not None:
                    if not written.items() <= answered.items():
                        run.problems.append(f"a merge answered a set without its own write: {response.text[:200]}")
                    check(run, answered, 1, env_set)
                    run.last_put[number] = n
                    run.last_written.update({key: written[key] for key in mine if key in written})
                    present |= written.keys() & set(own)
            else:
                key = rng.choice(own + SHARED_KEYS)
                with turn:
                    response = env_set.delete(key)
                values = {key: None}
                answer = env_set.delete_answer(response)
                acknowledged = answer != "error"
                if key in own and answer in ("removed", "absent") and answer != ("removed" if key in present else
                                                                                 "absent"):
                    run.problems.append(f"DELETE of own {key} ({'present' if key in present else 'absent'}) "
                                        f"answered {response.status_code}")
                    continue
                present.discard(key)
                if answer == "absent":
                    run.absent_deletes.append(key)  # deleted nothing: not a write
                    continue
            end = time.monotonic()
            if "locked" in response.text.lower() or not acknowledged:
                run.problems.append(f"{response.request.method} answered {response.status_code}: {response.text[:200]}")
                continue
            run.ops.append(Op(start, end, values))
    except Exception as exc:  # noqa: BLE001 (a client's failure is the main thread's to report)
        run.problems.append(f"client {number} stopped: {exc!r}")


def reader(env_set: EnvSet, run: Run, done: threading.Event) -> None:
    """Read the set until the clients are done; each read must be whole, and no client's group goes back."""
    seen: dict[str, str] = {}
    try:
        while not done.is_set():
            response = env_set.api.get(env_set.read_url)
            if env_set.whole_set and response.status_code in (409, 503):
                continue  # read where it is delivered, in the workload, which every write restarts
            if response.status_code != 200:
                run.problems.append(f"GET answered {response.status_code}: {response.text[:200]}")
                continue
            snapshot = env_set.decode(response)
            check(run, snapshot, 0, env_set)
            for number in run.sent:
                key = group(number)[0]
                if key in seen and (key not in snapshot or generation_of(snapshot[key]) < generation_of(seen[key])):
                    run.stale.append(f"a later read went back from {seen[key]} to {snapshot.get(key)}")
                if key in snapshot:
                    seen[key] = snapshot[key]
    except Exception as exc:  # noqa: BLE001
        run.problems.append(f"a reader stopped: {exc!r}")


def generation_of(stored: str) -> int:
    found = VALUE.fullmatch(stored)
    return int(found[2]) if found else -1


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


@pytest.mark.parametrize("platform", platforms.NAMES)
def test_sixteen_clients_merging_and_deleting_end_in_a_serial_order(new_api, platform: str, store_kind: str) -> None:
    """16 clients write one set while 2 readers read it: every read and every merge's answer shows each
    merge whole or not at all (where merges are multi-key) and only values written, and the final set is one a
    serial order of the acknowledged writes leaves, each client's keys at its last acknowledged write."""
    apis = [new_api() for _ in range(CLIENTS + READERS)]
    token = str(apis[0].headers["Authorization"]).split()[1]
    for api in apis:
        api.use_token(token)  # one user, sixteen clients and two readers
    first = platforms.kit(platform).env_set(apis[0])
    count = platforms.trials(platform, 150, 1500, store=store_kind)  # writes per client
    sets = [dataclasses.replace(first, api=api) for api in apis]
    run = Run(sent={number: {} for number in range(CLIENTS)})  # readers iterate it: no keys added later
    done = threading.Event()
    clients = [threading.Thread(target=client, args=(env_set, n, count, run))
               for n, env_set in enumerate(sets[:CLIENTS])]
    readers = [threading.Thread(target=reader, args=(env_set, run, done)) for env_set in sets[CLIENTS:]]
    for thread in clients + readers:
        thread.start()
    for thread in clients:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    final = first.get()
    check(run, final, 0, first)
    wrong = serializable_per_key(run.ops, final)
    not_last = [key for key, last in run.last_written.items() if final.get(key) != last]
    # A race (a 409 or 404 a per-variable write retried on) can only be on a key several clients write.
    races = [key for env_set in sets for key in env_set.races]
    figure(f"concurrency {platform} on {store_kind} (16 clients, 2 readers)", writes=CLIENTS * count,
           acknowledged=len(run.ops),
           deletes_of_absent_keys=len(run.absent_deletes), errors=len(run.problems), reads=run.snapshots[0],
           put_answers_checked=run.snapshots[1], half_applied_writes_seen=len(run.torn), stale_reads=len(run.stale),
           values_never_written=len(run.phantoms), group_keys_not_last_write=len(not_last),
           keys_not_serializable=len(wrong), races_retried=len(races))
    assert run.torn == [], run.torn[:10]
    assert run.phantoms == [], run.phantoms[:10]
    assert run.stale == [], run.stale[:10]
    assert run.problems == []
    assert len(run.ops) + len(run.absent_deletes) == CLIENTS * count
    assert len(run.last_put) == CLIENTS and not_last == []
    assert {key[:key.index("_")] for key in run.last_written} == {f"C{number}" for number in range(CLIENTS)}
    assert wrong == []
    assert set(races) <= set(SHARED_KEYS), races
    # The readers read all along: 50 reads each, or one read per 8 writes in a run shorter than that (a share).
    assert run.snapshots[0] >= min(50 * READERS, CLIENTS * count // 8), (
        f"only {run.snapshots[0]} reads ran while the clients wrote")


def test_the_serial_order_check_catches_a_lost_or_stale_write() -> None:
    first, second = Op(0.0, 1.0, {"A": "1"}), Op(2.0, 3.0, {"A": "2", "B": None})
    overlapping = Op(0.5, 2.5, {"A": "3"})
    assert serializable_per_key([first, second], {"A": "2"}) == []
    assert serializable_per_key([first, second], {"A": "1"}) == ["A"]  # stale: a later write was lost
    assert serializable_per_key([first, second], {"A": "2", "B": "x"}) == ["B"]  # deleted last, yet present
    assert serializable_per_key([first, second, overlapping], {"A": "3"}) == []  # concurrent with the last


def test_the_written_values_check_catches_a_value_never_written() -> None:
    sent = {0: {0: {"C0_G0", "SHARED_0"}, 1: {"C0_G0"}}, 1: {0: {"C1_G0"}}}
    assert phantom_values({"C0_G0": value(0, 1), "SHARED_0": value(0, 0), "C1_G0": value(1, 0)}, sent) == []
    assert phantom_values({"SHARED_0": value(0, 1)}, sent) != []  # write 1 of client 0 did not carry SHARED_0
    assert phantom_values({"C0_G0": value(0, 2)}, sent) != []  # no write 2 of client 0
    assert phantom_values({"C1_G0": value(0, 0)}, sent) != []  # client 0 never wrote client 1's key
    assert phantom_values({"C0_G0": "c0-gen0x"}, sent) != []  # no write carried this value at all


def test_the_whole_write_check_catches_a_half_applied_put() -> None:
    sent = {0: {0: {*group(0), "SHARED_0"}, 1: {*group(0), "C0_K1"}}, 1: {0: {*group(1), "SHARED_0"}}}
    zero, one = dict.fromkeys(group(0), value(0, 0)), dict.fromkeys(group(0), value(0, 1))
    other = dict.fromkeys(group(1), value(1, 0))
    assert torn_writes({}, sent) == []  # nothing written yet
    assert torn_writes({**zero, "SHARED_0": value(0, 0)}, sent) == []
    assert torn_writes({**one, "SHARED_0": value(0, 0), "C0_K1": value(0, 1)}, sent) == []  # 1 left SHARED_0
    assert torn_writes({**one, **other, "SHARED_0": value(1, 0)}, sent) == []  # overlapping: client 1 won
    assert torn_writes({**zero, "C0_G3": value(0, 1)}, sent) != []  # the group split
    assert torn_writes({**other, "C1_G2": value(0, 0)}, sent) != []  # a value in the wrong group
    assert torn_writes(dict(list(zero.items())[:2]), sent) != []  # half of the first write
    assert torn_writes({**zero, "C0_K1": value(0, 1)}, sent) != []  # PUT 1 reached C0_K1, not the group
    assert torn_writes({**one, "C0_K1": value(0, 0)}, sent) != []  # PUT 1 reached the group, not C0_K1


def fleet_workspace(tmp_path: Path, server: ServerProcess, token: str, count: int, prefix: str) -> Workspace:
    """The fleet program: `count` single-variable resources `PREFIX_<n>`."""
    ws = Workspace(tmp_path, FLEET, server.url, token)
    ws.set_config("count", str(count))
    ws.set_config("prefix", prefix)
    return ws


@pytest.mark.slow
def test_two_hundred_resources_with_parallel_32_converge(tmp_path: Path, server: ServerProcess, api: Api,
                                                        store_kind: str) -> None:
    count = scaled(200, 500)
    token = str(api.headers["Authorization"]).split()[1]
    ws = fleet_workspace(tmp_path, server, token, count, "FLEET")
    started = time.monotonic()
    ws.up("--parallel", "32")
    seconds = time.monotonic() - started
    stored = api.get("/api/v1/env_vars").json()["vars"]
    assert stored == {f"FLEET_{n}": f"v{n}" for n in range(count)}
    preview = json.loads(ws.run("preview", "--json").stdout)
    figure(f"engine --parallel 32 on {store_kind}", resources=count, up_seconds=round(seconds, 1),
           changes_after=sum(v for k, v in preview["changeSummary"].items() if k != "same"))
    assert preview["changeSummary"] == {"same": count + 1}
    ws.destroy("--parallel", "32")
    assert api.get("/api/v1/env_vars").json()["vars"] == {}

"""Sevalla's promises beyond the routes, through a real server: values encrypted at rest (no plaintext in any file
under the data dir or in the server's log, through writes, updates, a deploy and a restart), a sealed value moved to
another variable's row refused, and where each flag takes effect (the build sees `is_buildtime`, the app
`is_runtime`)."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envvars_server.at_rest import KEY_FILE
from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE
from tests.conftest import Api, start_server
from tests.figures import figure
from tests.stores import check_store, sql, stored_bytes
from tests.test_sevalla_env_vars import application, create, listed, url

LOGIN = {"PATH", "HOME", "SHELL", "USER", "LOGNAME"}


def seen(api: Api, app: str, phase: str | None = None) -> dict[str, str]:
    """The application's own variables as a login in that phase of its deploy sees them."""
    response = api.get(f"/_envvars/v1/workloads/{app}/environment", params={"phase": phase} if phase else {})
    assert response.status_code == 200, response.text
    return {key: value for key, value in response.json()["vars"].items() if key not in LOGIN}


def deploy(api: Api, app: str) -> None:
    response = api.post(f"/_envvars/v1/workloads/{app}/restart")
    assert response.status_code == 200 and response.json()["state"] == "running", response.text


def plaintext_hits(data_dir: Path, log: Path, needles: list[str]) -> dict[str, int]:
    """Every file under the data dir (DB, -wal, -shm, key, disks, logs...) and the server log that holds a needle.

    Each file is mapped, not read (a workload's disk is a sparse image of a GiB), and only its data is searched
    (its holes read as NUL bytes, which no needle holds): once for each distinct start of a needle (its first 6
    bytes), and only where one is, for each needle.
    """
    assert all("\x00" not in needle for needle in needles), "a needle with a NUL byte could span a hole"
    starts = {needle.encode()[:6] for needle in needles}
    found: dict[str, int] = {}
    for path in [*sorted(data_dir.rglob("*")), log]:
        if not path.is_file() or path.is_symlink() or path.stat().st_size == 0:
            continue
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as content:
            extents = [extent for extent in data_extents(file.fileno(), len(content))
                       if any(holds(content, start, [extent]) for start in starts)]
            count = sum(holds(content, needle.encode(), extents) for needle in needles)
        if count:
            found[str(path.relative_to(data_dir.parent))] = count
    return found


def holds(content: mmap.mmap, needle: bytes, extents: list[tuple[int, int]]) -> bool:
    return any(content.find(needle, start, end) >= 0 for start, end in extents)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of each run of data in a file, holes left out (the whole file where holes are not told)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after `offset`
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        offset = end


def store_hits(server: ServerProcess, needles: list[str]) -> int:
    """How many needles the server's store holds where it is not a file of the data dir: its PostgreSQL database."""
    dumped = stored_bytes(server) if server.database else b""
    return sum(needle.encode() in dumped for needle in needles)


def test_no_value_in_plaintext_in_any_file_through_writes_updates_a_deploy_and_a_restart(
    tmp_path: Path, database_url: str | None, store_kind: str,
) -> None:
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    first = {f"VAR_{n}": f"pl41n-first-{n}-{uuid.uuid4()}" for n in range(40)}
    second = {key: f"pl41n-second-{uuid.uuid4()}" for key in first}
    with log_path.open("w") as log, ServerProcess(data_dir, log=log, database=database_url,
                                                  args=["--log-level", "debug", "--access-log"]) as server:
        token = server.token("at-rest")
        with Api(server.url, token) as api:
            app = application(api)
            made = {key: create(api, app, key=key, value=value, is_buildtime=n % 2 == 0)
                    for n, (key, value) in enumerate(first.items())}
            deploy(api, app)
            assert seen(api, app, "runtime") == first
            for key, value in second.items():
                assert api.put(url(app, made[key]["id"]), json={"value": value}).status_code == 200
            deploy(api, app)
            assert seen(api, app) == second
            assert seen(api, app, "build") == {k: v for n, (k, v) in enumerate(second.items()) if n % 2 == 0}
            needles = [*first.values(), *second.values()]
            while_running = plaintext_hits(data_dir, log_path, needles)
            in_database = store_hits(server, needles)
    key_file = data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    key_before = key_file.read_bytes()
    server = start_server(data_dir, database_url)
    try:
        with Api(server.url, token) as api:
            assert {item["key"]: item["value"] for item in listed(api, app, limit=100)["data"]} == second
            assert seen(api, app) == second  # the recovery boot got the stored set again (memory only)
            assert seen(api, app, "build") == {k: v for n, (k, v) in enumerate(second.items()) if n % 2 == 0}
        after_restart = plaintext_hits(data_dir, log_path, [*needles, key_before.hex()])
        in_database += store_hits(server, [*needles, key_before.hex()])
        check_store(server)
    finally:
        server.stop()
    assert key_file.read_bytes() == key_before
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    figure(f"sevalla at rest on {store_kind} (plaintext scan)", values=len(first) + len(second),
           files_scanned=len(files) + 1, databases_scanned=int(database_url is not None),
           hits=sum(while_running.values()) + sum(after_restart.values()) + in_database)
    assert any(path.name == DB_FILE + "-wal" for path in files) or (data_dir / DB_FILE).exists() or database_url
    assert while_running == {} and after_restart == {} and in_database == 0


def test_a_sealed_value_moved_to_another_row_does_not_open(tmp_path: Path, database_url: str | None) -> None:
    server = start_server(tmp_path, database_url)
    token = server.token("mover")
    try:
        with Api(server.url, token) as api:
            app = application(api)
            victim = create(api, app, key="VICTIM", value="victim-value")
            thief = create(api, app, key="THIEF", value="thief-value")
    finally:
        server.stop()
    rows = dict(sql(server, "SELECT id, value FROM env_vars WHERE platform = 'sevalla'"))
    assert all(value.startswith("v1:") for value in rows.values())
    sql(server, "UPDATE env_vars SET value = ? WHERE id = ?", (rows[victim["id"]], thief["id"]))
    server = start_server(tmp_path, database_url)
    try:
        with Api(server.url, token) as api:
            response = api.get(url(app))
            assert response.status_code == 500, response.text
            assert "victim-value" not in response.text and response.json()["data"]["code"] == "internal-error"
    finally:
        server.stop()


@pytest.mark.parametrize("when", ["created", "updated"])
def test_each_flag_takes_effect_where_it_says_at_the_next_deploy(api: Api, when: str) -> None:
    app = application(api)
    combos = {"BOTH": (True, True), "RUNTIME_ONLY": (True, False), "BUILD_ONLY": (False, True),
              "NEITHER": (False, False)}
    if when == "created":
        for key, (runtime, build) in combos.items():
            create(api, app, key=key, value=f"v-{key}", is_runtime=runtime, is_buildtime=build)
    else:
        made = {key: create(api, app, key=key, value=f"v-{key}") for key in combos}
        deploy(api, app)
        assert seen(api, app) == seen(api, app, "build") == {key: f"v-{key}" for key in combos}
        for key, (runtime, build) in combos.items():
            assert api.put(url(app, made[key]["id"]), json={"is_runtime": runtime, "is_buildtime": build}).ok
        assert seen(api, app) == {key: f"v-{key}" for key in combos}  # running: unchanged until a deploy
    deploy(api, app)
    assert seen(api, app, "build") == {"BOTH": "v-BOTH", "BUILD_ONLY": "v-BUILD_ONLY"}
    assert seen(api, app, "runtime") == seen(api, app) == {"BOTH": "v-BOTH", "RUNTIME_ONLY": "v-RUNTIME_ONLY"}
    assert [item["key"] for item in listed(api, app)["data"]] == list(combos)  # NEITHER is stored


def test_phases_are_documented_and_refused_where_a_platform_has_none(api: Api) -> None:
    app = application(api)
    response = api.get(f"/_envvars/v1/workloads/{app}/environment", params={"phase": "deploy"})
    assert response.status_code == 400 and "build, runtime" in response.json()["error"]
    container = api.post("/_envvars/v1/workloads", json={"platform": "hoody", "name": "c"}).json()["id"]
    response = api.get(f"/_envvars/v1/workloads/{container}/environment", params={"phase": "build"})
    assert response.status_code == 400 and "no deploy phases" in response.json()["error"]
    assert api.get(f"/_envvars/v1/workloads/{container}/environment").status_code == 200
    parameters = api.get("/openapi.json").json()["paths"]["/_envvars/v1/workloads/{workload_id}/environment"]["get"][
        "parameters"]
    assert any(parameter["name"] == "phase" and "build" in parameter["description"] for parameter in parameters)


def test_the_variables_never_reach_the_applications_disk(api: Api, server: ServerProcess) -> None:
    app = application(api)
    marker = f"d1sk-{uuid.uuid4()}"
    create(api, app, key="MARKER", value=marker)
    deploy(api, app)
    assert seen(api, app)["MARKER"] == seen(api, app, "build")["MARKER"] == marker
    disks = [path for path in (server.data_dir / "applications").glob(f"{app}*/**/*") if path.is_file()]
    assert disks and not any(marker.encode() in path.read_bytes() for path in disks)

"""Hoody's container env API against a real server: the seed's envelopes and codes, `synced`, restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from envvars_server.launch import ServerProcess
from tests.conftest import Api

LOGIN = {"PATH", "HOME", "SHELL", "USER", "LOGNAME"}  # what every login gets besides the container's map


def container(api: Api, name: str = "web") -> str:
    """A new running container of `api`'s user, made on the neutral surface."""
    response = api.post("/_envvars/v1/workloads", json={"platform": "hoody", "name": name})
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["platform"] == "hoody" and made["kind"] == "container" and made["state"] == "running"
    assert made["id"].startswith("cnt_") and len(made["id"]) == 16
    return str(made["id"])


def env_path(container_id: str, key: str | None = None) -> str:
    return f"/api/v1/containers/{container_id}/env" + (f"/{key}" if key else "")


def assert_ok(response: requests.Response, message: str, variables: dict[str, str], synced: bool) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"statusCode": 200, "message": message,
                               "data": {"environment_vars": variables, "synced": synced}}


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "error", "message", "code"}, body
    assert (body["statusCode"], body["code"]) == (status, code), body
    if message is not None:
        assert body["message"] == message


def seen(api: Api, container_id: str) -> dict[str, str]:
    """The container's own variables, as a login inside it sees them right now."""
    response = api.get(f"/_envvars/v1/workloads/{container_id}/environment")
    assert response.status_code == 200, response.text
    return {key: value for key, value in response.json()["vars"].items() if key not in LOGIN}


@pytest.fixture
def cid(api: Api) -> str:
    return container(api)


WRITES: list[tuple[str, Callable[[Api, str, dict[str, str]], requests.Response]]] = [
    ("PATCH", lambda api, cid, body: api.patch(env_path(cid), json=body)),
    ("PUT", lambda api, cid, body: api.put(env_path(cid), json=body)),
]


def test_a_new_container_has_no_variables_and_is_in_sync(api: Api, cid: str) -> None:
    response = api.get(env_path(cid))
    assert response.status_code == 200
    assert response.json() == {"statusCode": 200, "message": "Environment variables retrieved",
                               "data": {"environment_vars": {}}}
    assert seen(api, cid) == {}


@pytest.mark.parametrize(("method", "write"), WRITES, ids=[method for method, _ in WRITES])
def test_bulk_writes_merge_and_wait_for_a_restart(api: Api, cid: str, method: str,
                                                  write: Callable[[Api, str, dict[str, str]], requests.Response]
                                                  ) -> None:
    assert_ok(write(api, cid, {"A": "1", "B": "two"}), "Environment variables updated", {"A": "1", "B": "two"}, False)
    assert_ok(write(api, cid, {"B": "2", "C": "3"}), "Environment variables updated",
              {"A": "1", "B": "2", "C": "3"}, False)
    assert seen(api, cid) == {}  # the running container keeps what it started with
    assert_ok(api.post(f"/api/v1/containers/{cid}/restart"), "Container restarted", {"A": "1", "B": "2", "C": "3"},
              True)
    assert seen(api, cid) == {"A": "1", "B": "2", "C": "3"}
    assert_ok(write(api, cid, {"A": "1"}), "Environment variables updated", {"A": "1", "B": "2", "C": "3"}, True)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_one_variable_is_set_and_deleted_by_key(api: Api, cid: str, method: str) -> None:
    response = api.request(method, env_path(cid, "LOG_LEVEL"), json={"value": "debug"})
    assert_ok(response, "Environment variable updated", {"LOG_LEVEL": "debug"}, False)
    api.post(f"/api/v1/containers/{cid}/restart").raise_for_status()
    assert_ok(api.delete(env_path(cid, "LOG_LEVEL")), "Environment variable deleted", {}, False)
    assert_ok(api.delete(env_path(cid, "LOG_LEVEL")), "Environment variable deleted", {}, False)  # idempotent
    assert seen(api, cid) == {"LOG_LEVEL": "debug"}
    api.post(f"/_envvars/v1/workloads/{cid}/restart").raise_for_status()  # the neutral surface's restart
    assert seen(api, cid) == {}
    assert_ok(api.delete(env_path(cid, "NEVER_SET")), "Environment variable deleted", {}, True)


# Each with a valid variable beside the bad one where the body is a map of a valid size: all or nothing.
PATTERN = "^[a-zA-Z_][a-zA-Z0-9_]*$"
INVALID_BULK: list[tuple[Any, str, str | None]] = [
    ({"NEW": "x", "HOODY_TOKEN": "x"}, "RESERVED_ENV_PREFIX",
     "env var key 'HOODY_TOKEN' uses the prefix 'HOODY_', which Hoody reserves"),
    ({"NEW": "x", "1BAD": "x"}, "INVALID_ENV_KEY", f"env var key '1BAD' is invalid: keys must match {PATTERN}"),
    ({"NEW": "x", "K" * 257: "x"}, "INVALID_ENV_KEY",
     f"env var key '{'K' * 64}…' is too long: 257 chars, the limit is 256"),
    ({"NEW": "x", "BIG": "x" * 65_537}, "VALIDATION_ERROR",
     "value of env var 'BIG' is too long: 65537 chars, the limit is 65536"),
    ({}, "VALIDATION_ERROR", "0 env vars in one request: Hoody takes 1 to 200"),
    ({f"K{n}": "v" for n in range(201)}, "VALIDATION_ERROR", "201 env vars in one request: Hoody takes 1 to 200"),
    ({"NEW": "x", "A": 1}, "VALIDATION_ERROR", "A: Input should be a valid string"),
    (["A"], "VALIDATION_ERROR", None),
]


@pytest.mark.parametrize(("body", "code", "message"), INVALID_BULK, ids=[code + str(n) for n, (_, code, _m) in
                                                                           enumerate(INVALID_BULK)])
def test_a_refused_write_names_the_rule_and_stores_nothing(api: Api, cid: str, body: Any, code: str,
                                                           message: str | None) -> None:
    api.patch(env_path(cid), json={"KEEP": "kept"}).raise_for_status()
    for method in ("PATCH", "PUT"):
        assert_error(api.request(method, env_path(cid), json=body), 400, code, message)
    assert api.get(env_path(cid)).json()["data"]["environment_vars"] == {"KEEP": "kept"}


def test_the_largest_documented_write_is_accepted(api: Api, cid: str) -> None:
    body = {f"K{n:03}": "v" for n in range(199)} | {"K" * 256: "x" * 65_536}
    response = api.patch(env_path(cid), json=body)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["data"]["environment_vars"] == body


def test_reserved_keys_cannot_be_set_or_deleted_one_by_one(api: Api, cid: str) -> None:
    assert_error(api.patch(env_path(cid, "HOODY_ID"), json={"value": "x"}), 400, "RESERVED_ENV_PREFIX")
    assert_error(api.delete(env_path(cid, "HOODY_ID")), 400, "RESERVED_ENV_PREFIX")
    assert_error(api.put(env_path(cid, "9LIVES"), json={"value": "x"}), 400, "INVALID_ENV_KEY")
    assert_error(api.put(env_path(cid, "OK"), json={"value": "a\u0000b"}), 400, "VALIDATION_ERROR")
    assert_error(api.put(env_path(cid, "OK"), json={}), 400, "VALIDATION_ERROR", "value: Field required")


def test_tokens_are_checked_before_anything_else(anonymous: Api, cid: str) -> None:
    assert_error(anonymous.get(env_path(cid)), 401, "MISSING_TOKEN")
    assert_error(anonymous.patch(env_path(cid), data=b"{not json"), 401, "MISSING_TOKEN")
    assert_error(anonymous.get(env_path(cid), headers={"Authorization": "Bearer nope"}), 401, "INVALID_TOKEN")


def test_another_users_container_does_not_exist_for_them(new_api: Callable[[], Api]) -> None:
    owner, other = new_api(), new_api()
    cid = container(owner)
    owner.patch(env_path(cid), json={"SECRET": "owner-only"}).raise_for_status()
    missing = f"container {cid!r} not found"
    assert_error(other.get(env_path(cid)), 404, "CONTAINER_NOT_FOUND", missing)
    assert_error(other.patch(env_path(cid), json={"X": "1"}), 404, "CONTAINER_NOT_FOUND", missing)
    assert_error(other.put(env_path(cid, "SECRET"), json={"value": "x"}), 404, "CONTAINER_NOT_FOUND", missing)
    assert_error(other.delete(env_path(cid, "SECRET")), 404, "CONTAINER_NOT_FOUND", missing)
    assert_error(other.post(f"/api/v1/containers/{cid}/restart"), 404, "CONTAINER_NOT_FOUND", missing)
    for surface in (other.get(f"/_envvars/v1/workloads/{cid}/environment"),
                    other.post(f"/_envvars/v1/workloads/{cid}/restart")):
        assert surface.status_code == 404 and surface.json() == {"error": f"workload {cid!r} not found"}
    assert owner.get(env_path(cid)).json()["data"]["environment_vars"] == {"SECRET": "owner-only"}


def test_containers_keep_their_maps_apart(api: Api) -> None:
    first, second = container(api, "one"), container(api, "two")
    api.patch(env_path(first), json={"SHARED": "first"}).raise_for_status()
    api.patch(env_path(second), json={"SHARED": "second"}).raise_for_status()
    api.put("/api/v1/env_vars", json={"vars": {"SHARED": "vers"}}).raise_for_status()  # the Vers account's set
    for cid, value in ((first, "first"), (second, "second")):
        api.post(f"/api/v1/containers/{cid}/restart").raise_for_status()
        assert seen(api, cid) == {"SHARED": value}


def test_the_neutral_surface_names_what_it_cannot_make(api: Api) -> None:
    response = api.post("/_envvars/v1/workloads", json={"platform": "nowhere", "name": "x"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("platform 'nowhere' has no workloads here; known: ")
    assert api.get("/_envvars/v1/workloads/cnt_000000000000/environment").status_code == 404


def test_each_boot_of_a_container_writes_its_env_file_exactly_once(server: ServerProcess, api: Api, cid: str) -> None:
    def injections() -> int:
        log = (server.data_dir / "containers" / cid / "agent.log").read_text(errors="replace")
        return sum(line.startswith("envvars-agent: WriteFile '/run/envvars/environ'") for line in log.splitlines())

    assert injections() == 1  # its first boot
    for round_ in range(3):
        api.patch(env_path(cid), json={"ROUND": str(round_)}).raise_for_status()
        assert injections() == 1 + round_  # a write never reaches the running container
        api.post(f"/api/v1/containers/{cid}/restart").raise_for_status()
        assert injections() == 2 + round_
    assert seen(api, cid) == {"ROUND": "2"}


def test_a_container_sees_every_value_intact(api: Api, cid: str) -> None:
    values = {"HASH": "before # after", "LINES": "-----BEGIN KEY-----\nabc\r\n-----END KEY-----\n",
              "LONG": "x" * 65_536, "QUOTES": "'single' \"double\" $HOME `tick` \\", "EQUALS": "a=b=c",
              "UNICODE": "ünïcødé ✓", "EMPTY": ""}
    api.patch(env_path(cid), json=values).raise_for_status()
    api.post(f"/api/v1/containers/{cid}/restart").raise_for_status()
    assert seen(api, cid) == values

"""Input that used to get through, each sent to a real server: lone surrogates, bytes that are not UTF-8
in paths and queries, repeated query parameters, and an env set grown without bound.

Each is refused with a 400 in the platform's envelope that names where (or which limit), and
nothing is stored or created.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from envvars.rules import DEFAULT_MAX_SET_BYTES, DEFAULT_MAX_SET_VARS
from envvars_server.launch import ServerProcess
from tests import openapi_doc, platforms
from tests.conftest import Api

NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
WITH_BODY = [(m, p) for m, p in openapi_doc.operations() if openapi_doc.body_schema(m, p) is not None]


def vers_error(message: str) -> dict[str, Any]:
    """Vers' error envelope."""
    return {"error": message, "success": False}


def lone(where: str, code: str = "D800") -> dict[str, Any]:
    """The 400 body for a lone surrogate at `where`."""
    return vers_error(f"{where}: holds a lone surrogate (U+{code}), which is not Unicode text")


def lone_key(where: str, key: str, code: str = "D800") -> dict[str, Any]:
    """The 400 body for a map key holding a lone surrogate."""
    return vers_error(f"{where}: the key {key} holds a lone surrogate (U+{code}), which is not Unicode text")


def send_json(api: Api, method: str, path: str, body: bytes | Iterator[bytes]) -> requests.Response:
    """Send `body` as is, as JSON (the `json=` of requests would refuse some of these)."""
    return api.request(method, path, data=body, headers={"Content-Type": "application/json"})


@pytest.fixture
def user(api: Api) -> Iterator[Api]:
    """A user with one variable and no VM; after the test the set is unchanged, no VM exists, listing works."""
    assert api.put("/api/v1/env_vars", json={"vars": {"KEPT": "kept"}}).status_code == 200
    yield api
    assert api.get("/api/v1/env_vars").json() == {"vars": {"KEPT": "kept"}}
    listed = api.get("/api/v1/vm")
    assert (listed.status_code, listed.json()) == (200, [])


@pytest.fixture
def vm(api: Api) -> Iterator[str]:
    """A running VM of the user."""
    vm_id = api.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}}).json()["vm_id"]
    yield vm_id
    api.delete(f"/api/v1/vm/{vm_id}")


# -- lone surrogates in bodies ---------------------------------------------------------------------

SURROGATE_BODIES = {
    "value": (rb'{"vars": {"A": "x\ud800y"}}', lone("vars.A")),
    "low surrogate value": (rb'{"vars": {"A": "\uDC00"}}', lone("vars.A", "DC00")),
    "reversed pair": (rb'{"vars": {"A": "\ude00\ud83d"}}', lone("vars.A", "DE00")),
    "key": (rb'{"vars": {"\ud800": "x"}}', lone_key("vars", r"'\ud800'")),
    "ignored field": (rb'{"vars": {"A": "x"}, "note\udc00": 1}', lone_key("request body", r"'note\udc00'", "DC00")),
    "raw bytes of a surrogate": (b'{"vars": {"A": "\xed\xa0\x80"}}', lone("vars.A")),
}


@pytest.mark.parametrize("body, expected", SURROGATE_BODIES.values(), ids=SURROGATE_BODIES)
def test_put_env_vars_refuses_lone_surrogate(user: Api, body: bytes, expected: dict[str, Any]) -> None:
    response = send_json(user, "PUT", "/api/v1/env_vars", body)
    assert (response.status_code, response.json()) == (400, expected)


def test_put_env_vars_refuses_lone_surrogate_in_chunked_body(user: Api) -> None:
    chunks = iter([b'{"vars": {"A": "', rb"\ud800", b'"}}'])
    response = send_json(user, "PUT", "/api/v1/env_vars", chunks)
    assert (response.status_code, response.json()) == (400, lone("vars.A"))


def test_put_env_vars_accepts_surrogate_pair_and_escaped_backslash(api: Api) -> None:
    response = send_json(api, "PUT", "/api/v1/env_vars", rb'{"vars": {"A": "\ud83d\ude00 \\ud800"}}')
    assert (response.status_code, response.json()) == (200, {"vars": {"A": "\U0001f600 \\ud800"}})


@pytest.mark.parametrize("labels, expected", [
    (r'{"a": "\ud800"}', lone("vm_config.labels.a")),
    (r'{"\ud800": "a"}', lone_key("vm_config.labels", r"'\ud800'")),
], ids=["value", "key"])
def test_new_root_refuses_lone_surrogate_label(user: Api, labels: str, expected: dict[str, Any]) -> None:
    body = b'{"vm_config": {"labels": ' + labels.encode() + b"}}"
    response = send_json(user, "POST", "/api/v1/vm/new_root?wait_boot=true", body)
    assert (response.status_code, response.json()) == (400, expected)


@pytest.mark.parametrize("method, path", WITH_BODY, ids=[f"{m} {p}" for m, p in WITH_BODY])
def test_every_body_refuses_lone_surrogate(user: Api, method: str, path: str) -> None:
    body = openapi_doc.sample(openapi_doc.body_schema(method, path) or {}, {})
    body["x\ud800"] = 1
    url = re.sub(r"\{[^}]+\}", NO_SUCH_ID, path)
    response = send_json(user, method, url, json.dumps(body).encode())
    message = lone_key("request body", r"'x\ud800'")["error"]
    assert (response.status_code, response.json()) == (400, platforms.envelope_of(path).body(400, message))


# -- paths and queries that are not UTF-8 ----------------------------------------------------------

@pytest.mark.parametrize("method, path, expected", [
    ("DELETE", "/api/v1/env_vars/%ED%A0%80", "path segment '%ED%A0%80' is not valid UTF-8 once percent-decoded"),
    ("GET", "/api/v1/vm/%ED%A0%80/metadata", "path segment '%ED%A0%80' is not valid UTF-8 once percent-decoded"),
    ("GET", "/api/v1/vm/A%FFB", "path segment 'A%FFB' is not valid UTF-8 once percent-decoded"),
    ("GET", "/api/v1/vm?%FF=1", "query parameter '%FF': its name is not valid UTF-8"),
    ("DELETE", "/api/v1/containers/cnt_x/env/%ED%A0%80",
     "path segment '%ED%A0%80' is not valid UTF-8 once percent-decoded"),
    ("GET", "/api/v1/containers/A%FFB/env", "path segment 'A%FFB' is not valid UTF-8 once percent-decoded"),
    ("GET", "/_envvars/v1/workloads/%ED%A0%80/environment",
     "path segment '%ED%A0%80' is not valid UTF-8 once percent-decoded"),
    ("GET", "/v3/applications/A%FFB/env-vars", "path segment 'A%FFB' is not valid UTF-8 once percent-decoded"),
    ("DELETE", f"/v3/applications/{NO_SUCH_ID}/env-vars/%ED%A0%80",
     "path segment '%ED%A0%80' is not valid UTF-8 once percent-decoded"),
    ("GET", f"/v3/applications/{NO_SUCH_ID}/env-vars?limit=1&%FF=1",
     "query parameter '%FF': its name is not valid UTF-8"),
], ids=["env var key", "vm id", "invalid byte", "query name", "container env key", "container id", "workload id",
        "application id", "application env var id", "application query name"])
def test_refuses_path_or_query_not_utf8(user: Api, method: str, path: str, expected: str) -> None:
    response = user.request(method, path)
    assert (response.status_code, response.json()) == (400, platforms.envelope_of(path).body(400, expected))


def test_read_file_refuses_query_value_not_utf8(api: Api, vm: str) -> None:
    response = api.get(f"/api/v1/vm/{vm}/files?path=/%ED%A0%80")
    expected = "query parameter 'path': its value is not valid UTF-8 once percent-decoded"
    assert (response.status_code, response.json()) == (400, vers_error(expected))


# -- repeated query parameters ---------------------------------------------------------------------

@pytest.mark.parametrize("query", ["count=2&count=1", "count=1&%63ount=2"], ids=["same", "percent-encoded"])
def test_branch_refuses_repeated_count(api: Api, vm: str, query: str) -> None:
    response = api.post(f"/api/v1/vm/{vm}/branch?{query}")
    expected = "query parameter 'count' is given 2 times; it takes one value"
    assert (response.status_code, response.json()) == (400, vers_error(expected))
    assert [summary["vm_id"] for summary in api.get("/api/v1/vm").json()] == [vm]


def test_no_documented_query_parameter_is_a_list() -> None:
    """Every query parameter may be given once only: true while no operation takes a list."""
    for method, path in openapi_doc.operations():
        for parameter in openapi_doc.operation(method, path).get("parameters", []):
            if parameter["in"] == "query":
                assert "array" not in json.dumps(parameter["schema"]), (method, path, parameter["name"])


# -- bounded env sets ------------------------------------------------------------------------------

VALUE = "v" * 8000


def chunk(name: str) -> dict[str, str]:
    """128 variables of 8000-char values: a body just under the 1 MiB request limit."""
    return {f"{name}_{i:03d}": VALUE for i in range(128)}


def set_bytes(variables: dict[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in variables.items())


def too_large(size: int, limit: int = DEFAULT_MAX_SET_BYTES) -> dict[str, Any]:
    return vers_error(f"env var set too large: its keys and values would take {size} bytes (UTF-8) after this "
                      f"change, the limit is {limit} bytes per set")


def too_many(count: int, limit: int = DEFAULT_MAX_SET_VARS) -> dict[str, Any]:
    return vers_error(f"too many env vars: the set would hold {count} after this change, the limit is {limit} per set")


def test_put_env_vars_refuses_set_over_byte_limit(api: Api) -> None:
    stored: dict[str, str] = {}
    for name in ("K0", "K1", "K2", "K3"):
        stored |= chunk(name)
        assert api.put("/api/v1/env_vars", json={"vars": chunk(name)}).status_code == 200
    response = api.put("/api/v1/env_vars", json={"vars": chunk("K4")})
    assert (response.status_code, response.json()) == (400, too_large(set_bytes(stored | chunk("K4"))))
    assert api.get("/api/v1/env_vars").json() == {"vars": stored}
    shrunk = api.put("/api/v1/env_vars", json={"vars": chunk("K4"), "replace": True})
    assert (shrunk.status_code, shrunk.json()) == (200, {"vars": chunk("K4")})


def test_put_env_vars_refuses_set_over_count_limit(api: Api) -> None:
    full = {f"K{i:05d}": "" for i in range(DEFAULT_MAX_SET_VARS)}
    assert api.put("/api/v1/env_vars", json={"vars": full}).status_code == 200
    expected = too_many(DEFAULT_MAX_SET_VARS + 1)
    for body in ({"vars": {"ONE_MORE": ""}}, {"vars": {**full, "ONE_MORE": ""}, "replace": True}):
        response = api.put("/api/v1/env_vars", json=body)
        assert (response.status_code, response.json()) == (400, expected)
    # The limit is on the resulting set: overwriting a key keeps the count.
    assert api.put("/api/v1/env_vars", json={"vars": {"K00000": "changed"}}).status_code == 200
    assert api.get("/api/v1/env_vars").json()["vars"] == full | {"K00000": "changed"}


def test_concurrent_upserts_cannot_pass_the_limit_together(api: Api) -> None:
    results: dict[str, int] = {}

    def upsert(name: str) -> None:
        with Api(api.base_url, None) as session:
            session.headers.update(api.headers)
            results[name] = session.put("/api/v1/env_vars", json={"vars": chunk(name)}).status_code

    threads = [threading.Thread(target=upsert, args=(f"T{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sorted(name for name, status in results.items() if status == 200)
    assert sorted(results.values()) == [200] * 4 + [400] * 4  # 4 chunks fit in 4 MiB, a 5th does not
    expected: dict[str, str] = {}
    for name in accepted:
        expected |= chunk(name)
    assert api.get("/api/v1/env_vars").json() == {"vars": expected}


def test_serve_options_set_the_limits(tmp_path: Path) -> None:
    options = ["--max-vars-per-set", "2", "--max-set-bytes", "10"]
    with ServerProcess(tmp_path, args=options) as server, Api(server.url, server.token("limited")) as api:
        response = api.put("/api/v1/env_vars", json={"vars": {"A": "1", "B": "2", "C": "3"}})
        assert (response.status_code, response.json()) == (400, too_many(3, limit=2))
        response = api.put("/api/v1/env_vars", json={"vars": {"A": "0123456789"}})
        assert (response.status_code, response.json()) == (400, too_large(11, limit=10))
        assert api.put("/api/v1/env_vars", json={"vars": {"A": "012345678"}}).status_code == 200


def test_concurrent_creates_cannot_pass_the_limit_together(tmp_path: Path) -> None:
    """Sevalla writes one variable per request: eight creates at once into an application that has room for three
    leave exactly three, the others refused with the limit's 400 (`env-var-limit-exceeded`)."""
    with ServerProcess(tmp_path, args=["--max-vars-per-set", "3"]) as server, \
            Api(server.url, server.token("limited")) as api:
        application = platforms.make_workload(api, "sevalla")
        url = f"/v3/applications/{application}/env-vars"
        results: dict[str, requests.Response] = {}

        def create(key: str) -> None:
            with Api(server.url, None) as session:
                session.headers.update(api.headers)
                results[key] = session.post(url, json={"key": key, "value": "v"})

        threads = [threading.Thread(target=create, args=(f"K{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        made = sorted(key for key, response in results.items() if response.status_code == 201)
        refused = [response.json()["data"]["code"] for response in results.values() if response.status_code != 201]
        assert (len(made), refused) == (3, ["env-var-limit-exceeded"] * 5)
        assert sorted(item["key"] for item in api.get(url).json()["data"]) == made

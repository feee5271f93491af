"""Vertra's app environments against a real server: the routes, the three id forms, every rule and its code, nothing
stored on a refusal, isolation, and restart-to-apply seen from inside the app."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from envvars_server.launch import ServerProcess
from envvars_server.platforms.vertra import workspace_of
from tests.conftest import Api

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
KEPT = {"KEPT": "kept"}


def new_app(api: Api) -> str:
    """A new app of `api`'s user, made on the neutral surface."""
    response = api.post("/_envvars/v1/workloads", json={"platform": "vertra", "name": "web"})
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["platform"], made["kind"], made["state"]) == ("vertra", "app", "running")
    assert re.fullmatch(r"[0-9a-f]{32}", made["id"]), made
    return str(made["id"])


def workspace(server: ServerProcess, api: Api) -> str:
    """The workspace (organization) id of `api`'s user."""
    user = server.store().user_for_token(str(api.headers["Authorization"]).split()[1])
    assert user is not None
    return workspace_of(user)


def ok(response: requests.Response) -> list[dict[str, Any]]:
    """The variables of a success answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"status", "response"} and body["status"] == "success", body
    return list(body["response"])


def values(variables: list[dict[str, Any]]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in variables}


def error(response: requests.Response, status: int, code: str) -> str:
    """The message of an error answer of `status` and `code`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "code", "message"} and (body["status"], body["code"]) == ("error", code), body
    return str(body["message"])


def put(api: Api, app: str, *variables: dict[str, Any]) -> requests.Response:
    return api.put(f"/v1/apps/{app}/environments", json={"environments": list(variables)})


def listed(api: Api, app: str) -> list[dict[str, Any]]:
    return ok(api.get(f"/v1/apps/{app}/envs"))


@pytest.fixture(scope="module")
def owner(server: ServerProcess) -> Iterator[Api]:
    """One user for the module's refusal tests, holding `KEPT` in one app."""
    with Api(server.url, server.token(f"vertra-{uuid.uuid4().hex[:8]}")) as api:
        yield api


@pytest.fixture(scope="module")
def held(owner: Api) -> str:
    app = new_app(owner)
    ok(put(owner, app, {"key": "KEPT", "value": "kept"}))
    return app


def test_put_creates_and_edits_by_key_and_answers_every_variable(api: Api) -> None:
    app = new_app(api)
    first = ok(put(api, app, {"key": "API_KEY", "value": "secret123", "note": "API key for external service"},
                   {"key": "DATABASE_URL", "value": "mysql://user:pass@localhost/db"}))
    assert [set(item) for item in first] == [{"id", "key", "value", "note", "created_at"}] * 2
    assert [(item["key"], item["note"]) for item in first] == [("API_KEY", "API key for external service"),
                                                              ("DATABASE_URL", None)]
    assert all(UUID4.fullmatch(item["id"]) and STAMP.fullmatch(item["created_at"]) for item in first)
    edited = ok(put(api, app, {"key": "DATABASE_URL", "value": "v2", "note": "db"}, {"key": "NEW", "value": ""}))
    assert values(edited) == {"API_KEY": "secret123", "DATABASE_URL": "v2", "NEW": ""}  # API_KEY kept
    assert [item["id"] for item in edited[:2]] == [item["id"] for item in first]  # an edit keeps the id
    kept_note = ok(put(api, app, {"key": "API_KEY", "value": "x"}, {"key": "DATABASE_URL", "value": "v3",
                                                                    "note": None}))
    assert [item["note"] for item in kept_note] == ["API key for external service", None, None]
    assert listed(api, app) == kept_note


def test_post_takes_one_object_a_bare_array_or_the_wrapper(api: Api) -> None:
    app = new_app(api)
    url = f"/v1/apps/{app}/envs"
    ok(api.post(url, json={"key": "ONE", "value": "1", "id": "ignored"}))
    ok(api.post(url, json=[{"key": "TWO", "value": "2"}, {"key": "ONE", "value": "1b"}]))
    assert values(ok(api.post(url, json={"environments": [{"key": "THREE", "value": "3"}]}))) == {
        "ONE": "1b", "TWO": "2", "THREE": "3"}
    error(api.post(url, json=[]), 400, "INVALID_BODY")
    error(api.post(url, json="ONE=1"), 400, "INVALID_BODY")


def test_deletes_by_id_and_by_keys_answer_what_is_left(api: Api) -> None:
    app = new_app(api)
    made = ok(put(api, app, *({"key": key, "value": key.lower()} for key in ("A", "B", "C", "D"))))
    assert values(ok(api.delete(f"/v1/apps/{app}/envs/{made[0]['id']}"))) == {"B": "b", "C": "c", "D": "d"}
    message = error(api.delete(f"/v1/apps/{app}/envs/{made[0]['id']}"), 404, "ENVIRONMENTS_NOT_FOUND")
    assert made[0]["id"] in message
    assert values(ok(api.request("DELETE", f"/v1/apps/{app}/envs", json={"keys": ["B", "C", "NOPE"]}))) == {"D": "d"}
    message = error(api.request("DELETE", f"/v1/apps/{app}/envs", json={"keys": ["B", "NOPE"]}), 404,
                    "ENVIRONMENTS_NOT_FOUND")
    assert "'NOPE'" in message
    for body in ({"keys": []}, {"keys": "D"}, {"keys": ["D", "D"]}, {}, None):
        error(api.request("DELETE", f"/v1/apps/{app}/envs", json=body), 400, "INVALID_BODY")
    assert values(listed(api, app)) == {"D": "d"}


def test_the_three_id_forms_name_the_same_app(server: ServerProcess, new_api: Callable[[], Api]) -> None:
    api, other = new_api(), new_api()
    app, org = new_app(api), workspace(server, api)
    ok(put(api, f"{app}-{org}", {"key": "A", "value": "1"}))
    ok(api.put(f"/v1/apps/{app}/environments", params={"workspace_id": org},
               json={"environments": [{"key": "B", "value": "2"}]}))
    ok(api.post(f"/v1/apps/{app}-{org}/envs", json={"key": "C", "value": "3"}))
    for form in (app, f"{app}-{org}"):
        assert values(listed(api, form)) == {"A": "1", "B": "2", "C": "3"}
    assert values(ok(api.get(f"/v1/apps/{app}/envs", params={"workspace_id": org}))) == {"A": "1", "B": "2", "C": "3"}
    assert api.post(f"/v1/apps/{app}-{org}/restart").status_code == 200
    # Another workspace (someone else's, or none that exists) names no app of this user.
    for wrong in (f"{app}-{workspace(server, other)}", f"{app}-", f"{app}-{org}-{org}", f"{app}-{org.upper()}"):
        error(api.get(f"/v1/apps/{wrong}/envs"), 404, "APP_NOT_FOUND")
    error(api.get(f"/v1/apps/{app}/envs", params={"workspace_id": "0" * 32}), 404, "APP_NOT_FOUND")
    error(api.get(f"/v1/apps/{app}-{org}/envs", params={"workspace_id": "0" * 32}), 404, "APP_NOT_FOUND")
    error(api.delete(f"/v1/apps/{app}/envs/not-an-id"), 400, "INVALID_BODY")  # ids are the store's uuids


def test_twenty_five_after_the_write_and_an_edit_does_not_count_twice(api: Api) -> None:
    app = new_app(api)
    ok(put(api, app, *({"key": f"K{n}", "value": "v"} for n in range(24))))
    ok(put(api, app, {"key": "K0", "value": "edited"}, {"key": "K24", "value": "v"}))  # 25: one new, one edit
    full = values(listed(api, app))
    assert len(full) == 25
    ok(put(api, app, *({"key": f"K{n}", "value": "again"} for n in range(25))))  # 25 edits, nothing new
    message = error(put(api, app, {"key": "K1", "value": "lost"}, {"key": "K25", "value": "v"}), 400,
                    "ENV_LIMIT_EXCEEDED")
    assert "26" in message and "25" in message
    error(api.post(f"/v1/apps/{app}/envs", json={"key": "NEW", "value": "v"}), 400, "ENV_LIMIT_EXCEEDED")
    assert values(listed(api, app)) == dict.fromkeys(full, "again")  # nothing of the refused writes stored
    error(put(api, new_app(api), *({"key": f"K{n}", "value": "v"} for n in range(26))), 400, "ENV_LIMIT_EXCEEDED")


@pytest.mark.parametrize(("variables", "code", "named"), [
    ([{"key": "K" * 101, "value": "v"}], "ENV_VARIABLE_TOO_LONG", "KKKK"),
    ([{"key": "LONG", "value": "s" * 1001}], "ENV_VARIABLE_TOO_LONG", "'LONG'"),
    ([{"key": "NOTED", "value": "v", "note": "n" * 1001}], "ENV_VARIABLE_TOO_LONG", "'NOTED'"),
    *(([{"key": key, "value": "v"}], "INVALID_ENVIRONMENT", repr(key))
      for key in ("PORT", "port", "Host", "PATH", "home", "USER", "sHeLl", "1ABC", "A-B", "A B", "")),
    ([{"key": "NUL", "value": "a\x00b"}], "INVALID_ENVIRONMENT", "'NUL'"),
    ([{"key": "NUM", "value": 1}], "INVALID_ENVIRONMENT", "'NUM'"),
    ([{"key": "NOTE", "value": "v", "note": 5}], "INVALID_ENVIRONMENT", "'NOTE'"),
    ([{"value": "v"}], "INVALID_ENVIRONMENT", "key is required"),
    (["A=1"], "INVALID_ENVIRONMENT", "environments[1]"),  # after the good one
    ([{"key": "GOOD", "value": "v"}, {"key": "GOOD", "value": "w"}], "INVALID_BODY", "'GOOD'"),
    ([], "INVALID_BODY", "empty"),
    ({"key": "A", "value": "v"}, "INVALID_BODY", "array"),
])
def test_each_rule_has_its_code_names_the_key_and_stores_nothing(owner: Api, held: str, variables: Any, code: str,
                                                                 named: str) -> None:
    """One good variable beside the bad one: the whole request is refused."""
    body = [{"key": "GOOD_TOO", "value": "secret-value"}, *variables] if isinstance(variables, list) and variables \
        and code != "INVALID_BODY" else variables
    for response in (owner.put(f"/v1/apps/{held}/environments", json={"environments": body}),
                     owner.post(f"/v1/apps/{held}/envs", json={"environments": body})):
        message = error(response, 400, code)
        assert named in message and "secret-value" not in message and "sss" not in message, message
    assert values(listed(owner, held)) == KEPT


@pytest.mark.parametrize("body", [None, {}, {"environments": "A=1"}, {"environments": {"A": "1"}}, [{"key": "A"}]])
def test_bodies_of_another_shape_are_invalid_body(owner: Api, held: str, body: Any) -> None:
    error(owner.put(f"/v1/apps/{held}/environments", json=body), 400, "INVALID_BODY")
    assert values(listed(owner, held)) == KEPT


def test_another_users_app_is_a_404_and_untouched(server: ServerProcess, owner: Api, held: str,
                                                 new_api: Callable[[], Api]) -> None:
    other = new_api()
    org = workspace(server, owner)
    var_id = listed(owner, held)[0]["id"]
    nobody = error(other.get(f"/v1/apps/{'f' * 32}/envs"), 404, "APP_NOT_FOUND").replace("f" * 32, held)
    for target in (held, f"{held}-{org}"):
        for response in (other.get(f"/v1/apps/{target}/envs"), put(other, target, {"key": "X", "value": "1"}),
                         other.post(f"/v1/apps/{target}/envs", json={"key": "X", "value": "1"}),
                         other.request("DELETE", f"/v1/apps/{target}/envs", json={"keys": ["KEPT"]}),
                         other.delete(f"/v1/apps/{target}/envs/{var_id}"), other.post(f"/v1/apps/{target}/restart")):
            assert error(response, 404, "APP_NOT_FOUND") == nobody  # the same answer as for no app at all
    assert values(listed(owner, held)) == KEPT


def test_missing_and_bad_tokens_are_401(anonymous: Api, held: str) -> None:
    assert "missing" in error(anonymous.get(f"/v1/apps/{held}/envs"), 401, "UNAUTHORIZED")
    response = requests.put(anonymous.base_url + f"/v1/apps/{held}/environments", timeout=30,
                            headers={"Authorization": f"Bearer evt_{uuid.uuid4()}"}, json={"environments": []})
    assert "invalid" in error(response, 401, "UNAUTHORIZED") and response.headers["WWW-Authenticate"] == "Bearer"


def test_variables_reach_the_app_when_it_restarts(server: ServerProcess, api: Api) -> None:
    app = new_app(api)

    def inside() -> dict[str, str]:
        response = api.get(f"/_envvars/v1/workloads/{app}/environment")
        assert response.status_code == 200, response.text
        return {key: value for key, value in response.json()["vars"].items() if key.startswith("APP_")}

    ok(put(api, app, {"key": "APP_MODE", "value": "first"}, {"key": "APP_HASH", "value": "a#b \"q\" $HOME"}))
    assert inside() == {}  # started before the write: keeps what it started with
    restarted = api.post(f"/v1/apps/{app}/restart")
    assert restarted.status_code == 200 and restarted.json() == {"status": "success", "response": {
        "id": app, "workspace_id": workspace(server, api), "state": "running"}}
    assert inside() == {"APP_MODE": "first", "APP_HASH": "a#b \"q\" $HOME"}
    ok(put(api, app, {"key": "APP_MODE", "value": "second"}))
    ok(api.request("DELETE", f"/v1/apps/{app}/envs", json={"keys": ["APP_HASH"]}))
    assert inside() == {"APP_MODE": "first", "APP_HASH": "a#b \"q\" $HOME"}
    ok(api.post(f"/v1/apps/{app}/restart"))
    assert inside() == {"APP_MODE": "second"}

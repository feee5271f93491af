"""Sevalla's application env-var API against a real server: objects, ids, flags, 409s, 400s, isolation, envelope."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jsonschema_rs
import pytest
import requests

from tests import openapi_doc
from tests.conftest import Api

HELP = "If you need assistance, please contact support."
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def application(api: Api, name: str = "web") -> str:
    """A new application of `api`'s user, made on the neutral surface."""
    response = api.post("/_envvars/v1/workloads", json={"platform": "sevalla", "name": name})
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["platform"], made["kind"], made["state"]) == ("sevalla", "application", "running")
    assert UUID4.fullmatch(made["id"]), made
    return str(made["id"])


def url(app: str, var_id: str | None = None) -> str:
    return f"/v3/applications/{app}/env-vars" + (f"/{var_id}" if var_id else "")


def assert_error(response: requests.Response, status: int, code: str, message: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "status", "data"} and body["data"]["message"] == HELP, body
    assert (body["status"], body["data"]["code"]) == (status, code), body
    if message is not None:
        assert body["message"] == message
    return str(body["message"])


def create(api: Api, app: str, **body: Any) -> dict[str, Any]:
    response = api.post(url(app), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def listed(api: Api, app: str, **params: Any) -> dict[str, Any]:
    response = api.get(url(app), params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def app(api: Api) -> str:
    return application(api)


def test_create_answers_the_documented_object(api: Api, app: str) -> None:
    made = create(api, app, key="DATABASE_URL", value="postgres://user:pass@host:5432/db")
    assert set(made) == {"id", "app_id", "key", "value", "is_runtime", "is_buildtime", "created_at", "updated_at"}
    assert UUID4.fullmatch(made["id"]) and made["app_id"] == app
    assert (made["key"], made["value"], made["is_runtime"], made["is_buildtime"]) == (
        "DATABASE_URL", "postgres://user:pass@host:5432/db", True, True)
    assert STAMP.fullmatch(made["created_at"]) and made["updated_at"] == made["created_at"]
    flags = create(api, app, key="BUILD_ONLY", value="b", is_runtime=False, is_buildtime=True)
    assert (flags["is_runtime"], flags["is_buildtime"]) == (False, True)


def test_list_is_in_creation_order_and_pages(api: Api, app: str) -> None:
    assert listed(api, app) == {"data": [], "total": 0, "limit": 25, "offset": 0}
    made = [create(api, app, key=key, value=f"v{n}") for n, key in enumerate(["Z", "A", "M", "B"])]
    assert listed(api, app) == {"data": made, "total": 4, "limit": 25, "offset": 0}
    assert listed(api, app, limit=2, offset=1) == {"data": made[1:3], "total": 4, "limit": 2, "offset": 1}
    assert listed(api, app, offset=10)["data"] == []
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 10_001}, {"limit": "x"}):
        assert_error(api.get(url(app), params=params), 400, "bad-request")


def test_a_second_create_of_a_key_is_a_409_naming_it(api: Api, app: str) -> None:
    create(api, app, key="API_KEY", value="one")
    message = assert_error(api.post(url(app), json={"key": "API_KEY", "value": "two"}), 409, "env-var-key-exists")
    assert "'API_KEY'" in message and "two" not in message
    assert [item["value"] for item in listed(api, app)["data"]] == ["one"]


def test_put_is_a_partial_update_and_moves_updated_at(api: Api, app: str) -> None:
    made = create(api, app, key="A", value="1")
    time.sleep(0.01)
    response = api.put(url(app, made["id"]), json={"value": "2"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed == {**made, "value": "2", "updated_at": changed["updated_at"]}
    assert changed["updated_at"] > made["updated_at"] and STAMP.fullmatch(changed["updated_at"])
    flags = api.put(url(app, made["id"]), json={"is_runtime": False}).json()
    assert (flags["value"], flags["is_runtime"], flags["is_buildtime"]) == ("2", False, True)
    renamed = api.put(url(app, made["id"]), json={"key": "B", "is_buildtime": False}).json()
    assert (renamed["id"], renamed["key"], renamed["value"], renamed["is_runtime"], renamed["is_buildtime"]) == (
        made["id"], "B", "2", False, False)
    assert renamed["created_at"] == made["created_at"]
    assert listed(api, app)["data"] == [renamed]
    assert_error(api.put(url(app, made["id"]), json={}), 400, "bad-request")


def test_renaming_onto_a_taken_key_is_a_409_and_changes_nothing(api: Api, app: str) -> None:
    first, second = create(api, app, key="A", value="1"), create(api, app, key="B", value="2")
    message = assert_error(api.put(url(app, second["id"]), json={"key": "A", "value": "x"}), 409, "env-var-key-exists")
    assert "'A'" in message
    assert listed(api, app)["data"] == [first, second]
    same = api.put(url(app, first["id"]), json={"key": "A"})  # its own key: not a conflict
    assert same.status_code == 200 and same.json()["key"] == "A"


def test_delete_is_204_then_404(api: Api, app: str) -> None:
    made = create(api, app, key="A", value="1")
    response = api.delete(url(app, made["id"]))
    assert (response.status_code, response.content) == (204, b"")
    assert_error(api.delete(url(app, made["id"])), 404, "env-var-not-found")
    assert_error(api.put(url(app, made["id"]), json={"value": "x"}), 404, "env-var-not-found")
    assert listed(api, app)["data"] == []


@pytest.mark.parametrize("bad", ["not-a-uuid", "fb5e5168-4281-4bec-94c5-0d1584e9e65", "fb5e5168-4281-9bec-94c5-"
                                 "0d1584e9e657", "fb5e5168-4281-4bec-14c5-0d1584e9e657", "x" * 36])
def test_malformed_ids_are_400_not_404(api: Api, app: str, bad: str) -> None:
    made = create(api, app, key="A", value="1")
    assert_error(api.get(url(bad)), 400, "bad-request")
    assert_error(api.post(url(bad), json={"key": "B", "value": "2"}), 400, "bad-request")
    assert_error(api.put(url(app, bad), json={"value": "2"}), 400, "bad-request")
    assert_error(api.delete(url(app, bad)), 400, "bad-request")
    assert_error(api.delete(url(bad, made["id"])), 400, "bad-request")
    assert listed(api, app)["data"] == [made]


@pytest.mark.parametrize("nobody", ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                    "FB5E5168-4281-1BEC-A4C5-0D1584E9E657"])
def test_well_formed_unknown_ids_are_404(api: Api, app: str, nobody: str) -> None:
    assert_error(api.get(url(nobody)), 404, "application-not-found")
    assert_error(api.delete(url(app, nobody)), 404, "env-var-not-found")


def test_another_users_application_is_a_404_and_untouched(new_api: Any) -> None:
    owner, other = new_api(), new_api()
    app = application(owner)
    made = create(owner, app, key="SECRET", value="owner-only")
    for response in (other.get(url(app)), other.post(url(app), json={"key": "X", "value": "1"}),
                     other.put(url(app, made["id"]), json={"value": "stolen"}), other.delete(url(app, made["id"]))):
        message = assert_error(response, 404, "application-not-found")
        assert "owner-only" not in response.text and message
    own = application(other)  # a variable id of another application is not found in this one
    assert_error(other.put(url(own, made["id"]), json={"value": "x"}), 404, "env-var-not-found")
    assert listed(owner, app)["data"] == [made]


@pytest.mark.parametrize(("body", "code"), [
    ({"key": "", "value": "v"}, "invalid-env-var-key"),
    ({"key": "K" * 256, "value": "v"}, "invalid-env-var-key"),
    ({"key": "A=B", "value": "v"}, "invalid-env-var-key"),
    ({"key": "A\x00B", "value": "v"}, "invalid-env-var-key"),
    ({"key": "A", "value": "x" * 32_769}, "env-var-value-too-long"),
    ({"key": "A", "value": "a\x00b"}, "invalid-env-var-value"),
    ({"key": "A"}, "bad-request"),
    ({"value": "v"}, "bad-request"),
    ({"key": "A", "value": 1}, "bad-request"),
    ({"key": "A", "value": "v", "is_runtime": "yes"}, "bad-request"),
    ({"key": "A", "value": "v", "is_buildtime": None}, "bad-request"),
])
def test_refused_bodies_store_nothing(api: Api, app: str, body: dict[str, Any], code: str) -> None:
    message = assert_error(api.post(url(app), json=body), 400, code)
    if isinstance(body.get("value"), str) and len(body["value"]) > 3:
        assert body["value"] not in message
    assert listed(api, app)["data"] == []


def test_any_key_a_process_environment_holds_is_accepted(api: Api, app: str) -> None:
    keys = ["K" * 255, "lower.dots-and-dashes", "with space", "\u00e9t\u00e9", "1STARTS_WITH_DIGIT"]
    for key in keys:
        create(api, app, key=key, value="v")
    assert [item["key"] for item in listed(api, app)["data"]] == keys
    made = create(api, app, key="LONGEST", value="x" * 32_768)
    assert api.put(url(app, made["id"]), json={"key": "A=B"}).status_code == 400
    assert api.put(url(app, made["id"]), json={"value": "x\x00"}).status_code == 400


def test_missing_and_unknown_tokens_are_401(anonymous: Api, api: Api, app: str) -> None:
    assert_error(anonymous.get(url(app)), 401, "unauthorized")
    response = requests.get(anonymous.base_url + url(app), headers={"Authorization": f"Bearer evt_{uuid.uuid4()}"},
                            timeout=30)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_document_says_an_update_needs_a_field(api: Api, app: str) -> None:
    """A PUT of no field (none given, only unknown ones, or only nulls) is a 400: the document must call it invalid."""
    schema = openapi_doc.body_schema("PUT", "/v3/applications/{id}/env-vars/{env_var_id}")
    assert schema is not None
    made = create(api, app, key="A", value="1")
    for body in ({}, {"other": 1}, {"key": None}, {"value": None, "is_runtime": None}):
        assert not jsonschema_rs.Draft202012Validator(schema).is_valid(body), body
        assert_error(api.put(url(app, made["id"]), json=body), 400, "bad-request")
    for body in ({"value": "2"}, {"is_buildtime": False, "is_runtime": None}):
        assert jsonschema_rs.Draft202012Validator(schema).is_valid(body), body
        assert api.put(url(app, made["id"]), json=body).status_code == 200

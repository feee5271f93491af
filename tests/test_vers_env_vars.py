"""The Vers env-var API against a real server: every status code, rule and error body."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import Api

ENVELOPE_KEYS = {"error", "success"}


def assert_error(response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "success": False}


def test_get_starts_empty(api: Api) -> None:
    response = api.get("/api/v1/env_vars")
    assert response.status_code == 200
    assert response.json() == {"vars": {}}


def test_put_upserts_and_returns_whole_set(api: Api) -> None:
    assert api.put("/api/v1/env_vars", json={"vars": {"A": "1", "B": "2"}}).json() == {"vars": {"A": "1", "B": "2"}}
    response = api.put("/api/v1/env_vars", json={"vars": {"B": "3", "C": "4"}, "replace": False})
    assert response.status_code == 200
    assert response.json() == {"vars": {"A": "1", "B": "3", "C": "4"}}
    assert api.get("/api/v1/env_vars").json() == {"vars": {"A": "1", "B": "3", "C": "4"}}


def test_put_replace_sets_exactly_these_keys(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1", "B": "2"}})
    response = api.put("/api/v1/env_vars", json={"vars": {"C": "3"}, "replace": True})
    assert response.json() == {"vars": {"C": "3"}}
    assert api.put("/api/v1/env_vars", json={"vars": {}, "replace": True}).json() == {"vars": {}}


def test_put_replace_null_means_upsert(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1"}})
    assert api.put("/api/v1/env_vars", json={"vars": {"B": "2"}, "replace": None}).json() == {
        "vars": {"A": "1", "B": "2"}
    }


def test_delete_removes_one_key(api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1", "B": "2"}})
    response = api.delete("/api/v1/env_vars/A")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get("/api/v1/env_vars").json() == {"vars": {"B": "2"}}


def test_delete_missing_key_is_404(api: Api) -> None:
    assert_error(api.delete("/api/v1/env_vars/NOPE"), 404, "env var 'NOPE' does not exist")


def test_delete_invalid_key_is_400(api: Api) -> None:
    assert_error(api.delete("/api/v1/env_vars/1BAD"), 400,
                 "env var key '1BAD' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$")


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"1A": "v"}, "env var key '1A' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
        ({"": "v"}, "env var key '' is empty: keys need at least 1 char"),
        ({"K" * 257: "v"}, f"env var key '{'K' * 64}…' is too long: 257 chars, the limit is 256"),
        ({"V": "x" * 8193}, "value of env var 'V' is too long: 8193 chars, the limit is 8192"),
        ({"V": "a\nb"}, "value of env var 'V' contains a newline, which /etc/environment cannot represent "
                        "(one variable per line)"),
    ],
)
def test_put_rejects_bad_input_and_stores_nothing(api: Api, variables: dict[str, str], message: str) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"KEEP": "1"}})
    assert_error(api.put("/api/v1/env_vars", json={"vars": {"GOOD": "1", **variables}}), 400, message)
    assert_error(api.put("/api/v1/env_vars", json={"vars": variables, "replace": True}), 400, message)
    assert api.get("/api/v1/env_vars").json() == {"vars": {"KEEP": "1"}}


def test_put_accepts_limits_exactly(api: Api) -> None:
    variables = {"K" * 256: "x" * 8192}
    assert api.put("/api/v1/env_vars", json={"vars": variables}).json() == {"vars": variables}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"", "request body is required"),
        (b"{}", "vars: Field required"),
        (b'{"vars": []}', "vars: Input should be a valid dictionary"),
        (b'{"vars": {"A": 1}}', "vars.A: Input should be a valid string"),
        (b'{"vars": {"A": null}}', "vars.A: Input should be a valid string"),
        (b'{"vars": {}, "replace": "yes"}', "replace: Input should be a valid boolean"),
        (b"[]", "request body: Input should be a valid dictionary or object to extract fields from"),
    ],
)
def test_put_malformed_body_is_400_in_envelope(api: Api, body: bytes, message: str) -> None:
    response = api.put("/api/v1/env_vars", data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, message)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/env_vars"), ("PUT", "/api/v1/env_vars"), ("DELETE", "/api/v1/env_vars/A")],
)
@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic abc", "Bearer "])
def test_every_route_needs_a_valid_token(anonymous: Api, method: str, path: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = anonymous.request(method, path, data=b"{bad", headers=headers)
    sent = authorization == "Bearer nope"  # the others present no bearer token at all
    assert_error(response, 401, f"{'invalid' if sent else 'missing'} API token: send 'Authorization: Bearer <token>'")


def test_users_never_see_each_other(new_api) -> None:
    alice, bob = new_api(), new_api()
    alice.put("/api/v1/env_vars", json={"vars": {"SHARED": "alice"}})
    assert bob.get("/api/v1/env_vars").json() == {"vars": {}}
    bob.put("/api/v1/env_vars", json={"vars": {"SHARED": "bob"}, "replace": True})
    assert bob.delete("/api/v1/env_vars/SHARED").status_code == 204
    assert alice.get("/api/v1/env_vars").json() == {"vars": {"SHARED": "alice"}}


def test_unknown_route_uses_envelope(api: Api) -> None:
    assert_error(api.get("/api/v1/nope"), 404, "Not Found")


def test_replace_is_atomic_under_concurrent_reads(api: Api) -> None:
    """Readers racing replace-all writes only ever see one whole set, never a mix."""
    sets = [{f"K{i}_{n}": str(n) for i in range(50)} for n in range(2)]
    seen: list[dict[str, str]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(api.get("/api/v1/env_vars").json()["vars"])

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(40):
        assert api.put("/api/v1/env_vars", json={"vars": sets[n % 2], "replace": True}).status_code == 200
    done.set()
    reader.join()
    assert seen
    assert all(vars_ in ({}, sets[0], sets[1]) for vars_ in seen)


def test_openapi_document_is_served(anonymous: Api) -> None:
    document = anonymous.get("/openapi.json").json()
    put = document["paths"]["/api/v1/env_vars"]["put"]
    assert put["operationId"] == "set_env_vars"
    assert "bearer_auth" in document["components"]["securitySchemes"]

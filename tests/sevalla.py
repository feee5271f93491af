"""Sevalla applications for tests: made and deployed through the server's neutral workloads surface, their
variables read and written through Sevalla's API."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Api


def new_application(api: Api, name: str = "app") -> str:
    """A new application of `api`'s user; its id."""
    body = {"platform": "sevalla", "name": f"{name}-{uuid.uuid4().hex[:8]}"}
    response = api.post("/_envvars/v1/workloads", json=body)
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["platform"], made["kind"]) == ("sevalla", "application"), made
    return str(made["id"])


def listed(api: Api, app_id: str) -> list[dict[str, Any]]:
    """Every variable object of the application, as Sevalla's API lists them (all pages)."""
    found: list[dict[str, Any]] = []
    while True:
        response = api.get(f"/v3/applications/{app_id}/env-vars", params={"limit": 100, "offset": len(found)})
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        found += page
        if len(page) < 100:
            return found


def stored(api: Api, app_id: str) -> dict[str, str]:
    """The application's variables, key → value."""
    return {item["key"]: item["value"] for item in listed(api, app_id)}


def flags(api: Api, app_id: str) -> dict[str, tuple[bool, bool]]:
    """The application's variables, key → (is_runtime, is_buildtime)."""
    return {item["key"]: (item["is_runtime"], item["is_buildtime"]) for item in listed(api, app_id)}


def create(api: Api, app_id: str, key: str, value: str, **flags_: bool) -> dict[str, Any]:
    """A variable made out of band (another client); its object."""
    response = api.post(f"/v3/applications/{app_id}/env-vars", json={"key": key, "value": value, **flags_})
    assert response.status_code == 201, response.text
    return dict(response.json())


def update(api: Api, app_id: str, key: str, **fields: Any) -> None:
    """Change fields of the variable of `key` out of band."""
    var_id = next(item["id"] for item in listed(api, app_id) if item["key"] == key)
    response = api.put(f"/v3/applications/{app_id}/env-vars/{var_id}", json=fields)
    assert response.status_code == 200, response.text


def delete(api: Api, app_id: str, key: str) -> None:
    """Delete the variable of `key` out of band."""
    var_id = next(item["id"] for item in listed(api, app_id) if item["key"] == key)
    response = api.delete(f"/v3/applications/{app_id}/env-vars/{var_id}")
    assert response.status_code == 204, response.text


def deploy(api: Api, app_id: str) -> None:
    """Deploy the application: a build with its build-time variables, then the app with its runtime ones."""
    response = api.post(f"/_envvars/v1/workloads/{app_id}/restart")
    assert response.status_code == 200, response.text


def environment(api: Api, app_id: str, phase: str) -> dict[str, str]:
    """What the last deploy's build (`build`) or running app (`runtime`) saw."""
    response = api.get(f"/_envvars/v1/workloads/{app_id}/environment", params={"phase": phase})
    assert response.status_code == 200, response.text
    return dict(response.json()["vars"])

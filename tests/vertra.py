"""Vertra apps for tests: made and restarted through the server's neutral workloads surface, their variables read
and written through Vertra's API."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Api


def new_app(api: Api, name: str = "app") -> str:
    """A new app of `api`'s user; its id."""
    response = api.post("/_envvars/v1/workloads", json={"platform": "vertra", "name": f"{name}-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["platform"] == "vertra", made
    return str(made["id"])


def listed(api: Api, app_id: str) -> list[dict[str, Any]]:
    """Every variable object of the app, as Vertra's API lists them."""
    response = api.get(f"/v1/apps/{app_id}/envs")
    assert response.status_code == 200, response.text
    return list(response.json()["response"])


def stored(api: Api, app_id: str) -> dict[str, str]:
    """The app's variables, key → value."""
    return {item["key"]: item["value"] for item in listed(api, app_id)}


def notes(api: Api, app_id: str) -> dict[str, str | None]:
    """The app's variables, key → note."""
    return {item["key"]: item["note"] for item in listed(api, app_id)}


def put(api: Api, app_id: str, variables: dict[str, str], **notes_: str) -> None:
    """Create or edit variables out of band (another client), with notes by key."""
    body = [{"key": key, "value": value, **({"note": notes_[key]} if key in notes_ else {})}
            for key, value in variables.items()]
    response = api.put(f"/v1/apps/{app_id}/environments", json={"environments": body})
    assert response.status_code == 200, response.text


def delete(api: Api, app_id: str, *keys: str) -> None:
    """Delete variables of the app out of band."""
    response = api.delete(f"/v1/apps/{app_id}/envs", json={"keys": list(keys)})
    assert response.status_code == 200, response.text


def running_env(api: Api, app_id: str) -> dict[str, str]:
    """The environment the app's running boot has."""
    response = api.get(f"/_envvars/v1/workloads/{app_id}/environment")
    assert response.status_code == 200, response.text
    return dict(response.json()["vars"])

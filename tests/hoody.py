"""Hoody containers for tests: made through the server's neutral workloads surface, read through Hoody's API."""

from __future__ import annotations

import uuid

from tests.conftest import Api


def new_container(api: Api, name: str = "app") -> str:
    """A new container of `api`'s user; its id."""
    response = api.post("/_envvars/v1/workloads", json={"platform": "hoody", "name": f"{name}-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    made = response.json()
    assert (made["platform"], made["kind"]) == ("hoody", "container"), made
    return str(made["id"])


def stored(api: Api, container_id: str) -> dict[str, str]:
    """The container's map as Hoody's API answers it."""
    response = api.get(f"/api/v1/containers/{container_id}/env")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"]["environment_vars"])


def patch(api: Api, container_id: str, variables: dict[str, str]) -> None:
    """Merge `variables` into the container out of band (another client)."""
    response = api.patch(f"/api/v1/containers/{container_id}/env", json=variables)
    assert response.status_code == 200, response.text


def delete(api: Api, container_id: str, key: str) -> None:
    """Delete one key of the container out of band."""
    response = api.delete(f"/api/v1/containers/{container_id}/env/{key}")
    assert response.status_code == 200, response.text


def running_env(api: Api, container_id: str) -> dict[str, str]:
    """The environment the container's running boot has."""
    response = api.get(f"/_envvars/v1/workloads/{container_id}/environment")
    assert response.status_code == 200, response.text
    return dict(response.json()["vars"])


def restart(api: Api, container_id: str) -> None:
    """Restart the container out of band: it boots with its stored map."""
    response = api.post(f"/_envvars/v1/workloads/{container_id}/restart")
    assert response.status_code == 200, response.text

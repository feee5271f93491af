"""Hoody: a container's env vars (`/api/v1/containers/{id}/env`), taking effect when the container
restarts.

Each container has its own map (the store's scope is the container id). Writes merge into it and
never reach the running container: `POST /api/v1/containers/{id}/restart` boots it again with the
stored map as its process environment (every value intact, as in a real container). `synced` is true
exactly when the map the container's current boot received equals the stored map. The page documents
PATCH; Hoody's public SDK sends PUT, so both are served on both write routes.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from envvars.rules import (
    RuleViolation,
    describe,
    key_json_schema,
    key_violation,
    reserved_json_schema,
    value_json_schema,
)
from envvars.rules import violations as rule_violations
from envvars.rules.hoody import RULES
from envvars_server.deps import current_user, machines_of, store_of
from envvars_server.errors import ApiError, DomainError, Envelope, translator
from envvars_server.machines import (
    PROCESS_ENVIRONMENT,
    AgentDown,
    BootFailed,
    FreezeFailed,
    Machines,
    NotFound,
    NotRunning,
    QuotaExceeded,
    env_digest,
)
from envvars_server.platform import Runtime
from envvars_server.store import Store

PLATFORM = "hoody"
PREFIX = "/api/v1/containers"
ID_CHARS = string.ascii_lowercase + string.digits
COUNTS = RULES.per_request or (0, 0)
CODES = {400: "VALIDATION_ERROR", 401: "MISSING_TOKEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
         413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}
FAILURES: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, "CONTAINER_NOT_FOUND"), NotRunning: (409, "CONTAINER_NOT_RUNNING"),
    QuotaExceeded: (403, "CONTAINER_QUOTA_EXCEEDED"), BootFailed: (500, "CONTAINER_START_FAILED"),
    AgentDown: (503, "SERVICE_UNAVAILABLE"), FreezeFailed: (503, "SERVICE_UNAVAILABLE"),
}


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """Hoody's error body: `{"statusCode", "error", "message", "code"}`."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"statusCode": status, "error": phrase, "message": message, "code": code or "ERROR"}


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, codes=CODES, invalid_token_code="INVALID_TOKEN",
                    translate=translator(FAILURES, (500, "INTERNAL_ERROR")))


class ErrorResponse(BaseModel):
    """Hoody's error body."""

    statusCode: int  # noqa: N815  (the documented field names)
    error: str
    message: str
    code: str


class EnvData(BaseModel):
    """The container's whole map after the request, and whether its running boot has that map."""

    environment_vars: dict[str, str]
    synced: bool


class EnvResponse(BaseModel):
    """Hoody's success envelope around the container's map."""

    statusCode: int  # noqa: N815
    message: str
    data: EnvData


class ListData(BaseModel):
    """The container's whole map."""

    environment_vars: dict[str, str]


class ListResponse(BaseModel):
    """Hoody's success envelope for GET."""

    statusCode: int  # noqa: N815
    message: str
    data: ListData


class SetValue(BaseModel):
    """Body of the single-variable write."""

    model_config = ConfigDict(extra="ignore")
    value: StrictStr = Field(description=f"Value for the environment variable. {describe(RULES)}",
                             json_schema_extra=value_json_schema(RULES))


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description} for status, description in (
        (400, "VALIDATION_ERROR, INVALID_ENV_KEY or RESERVED_ENV_PREFIX"), (401, "MISSING_TOKEN or INVALID_TOKEN"),
        (404, "CONTAINER_NOT_FOUND: no such container of this user"), (413, "PAYLOAD_TOO_LARGE"))
}
Key = Annotated[str, Path(description="Environment variable key", json_schema_extra=key_json_schema(RULES))]
# Deleting is idempotent (200 whether or not the key exists, as documented), so any key but a reserved one is taken.
AnyKey = Annotated[str, Path(description="Environment variable key", json_schema_extra=reserved_json_schema(RULES))]
BulkBody = Annotated[dict[StrictStr, StrictStr], Body(
    description=f"Key-value pairs to merge. {describe(RULES)}",
    json_schema_extra={"propertyNames": key_json_schema(RULES), "additionalProperties": value_json_schema(RULES),
                       "minProperties": COUNTS[0], "maxProperties": COUNTS[1]})]

router = APIRouter(prefix=PREFIX, tags=["container-env"], responses=ERRORS)


@contextmanager
def run(runtime: Runtime) -> Iterator[None]:
    """Every user's containers, each booted with its own stored map: recovered at start, stopped at the end."""
    machines = runtime.machines(PLATFORM, "containers", "container", runtime.own_sets(PLATFORM), PROCESS_ENVIRONMENT)
    with runtime.serving(machines, "container", _new_container):
        yield


def _new_container(owner: str, name: str) -> dict[str, Any]:
    """The record of a new container: an id in Hoody's format (`cnt_` and 12 characters)."""
    container_id = "cnt_" + "".join(secrets.choice(ID_CHARS) for _ in range(12))
    return {"id": container_id, "owner_id": owner, "name": name, "mem_size_mib": 512, "fs_size_mib": 1024}


containers_of = machines_of(PLATFORM)


class Containers:
    """One user's view of the containers and their maps."""

    def __init__(self, user: str = Depends(current_user), machines: Machines = Depends(containers_of),
                 store: Store = Depends(store_of)):
        self.user = user
        self.machines = machines
        self.store = store

    def env(self, container_id: str) -> dict[str, str]:
        """The stored map of a container of this user (404 for any other)."""
        self.machines.record(self.user, container_id)
        return self.store.get_vars(PLATFORM, self.user, container_id)

    def merge(self, container_id: str, variables: Mapping[str, str]) -> dict[str, str]:
        """Merge `variables` into the container's map, all or nothing; the map after."""
        self.machines.record(self.user, container_id)
        _refuse(rule_violations(RULES, variables))
        try:
            return self.store.put_vars(PLATFORM, self.user, variables, replace=False, scope=container_id)
        except RuleViolation as exc:  # the map would grow beyond the server's limits
            raise ApiError(400, exc.message, RULES.code(exc.violations[0])) from None

    def answer(self, container_id: str, message: str, variables: dict[str, str]) -> EnvResponse:
        """The success envelope, with `synced` from the container's current boot."""
        record = self.machines.record(self.user, container_id)
        synced = record.get("env_digest") == env_digest(variables)
        return EnvResponse(statusCode=200, message=message, data=EnvData(environment_vars=variables, synced=synced))


def _refuse(found: list[Any]) -> None:
    """400 with the platform's code for the first broken rule, if any."""
    if found:
        raise ApiError(400, found[0].message, RULES.code(found[0]))


Caller = Depends(Containers)


@router.get("/{id}/env", operation_id="list_container_env", response_model=ListResponse)
def list_env(id: str, containers: Containers = Caller) -> ListResponse:  # noqa: A002  (the documented name)
    """Get all environment variables for a container."""
    variables = containers.env(id)
    return ListResponse(statusCode=200, message="Environment variables retrieved",
                        data=ListData(environment_vars=variables))


@router.patch("/{id}/env", operation_id="bulk_set_container_env", response_model=EnvResponse)
@router.put("/{id}/env", operation_id="bulk_set_container_env_put", response_model=EnvResponse)
def bulk_set(id: str, body: BulkBody, containers: Containers = Caller) -> EnvResponse:  # noqa: A002
    """Merge variables into the container's map (keys not in the body are kept); effective on the next restart."""
    return containers.answer(id, "Environment variables updated", containers.merge(id, body))


@router.patch("/{id}/env/{key}", operation_id="set_container_env", response_model=EnvResponse)
@router.put("/{id}/env/{key}", operation_id="set_container_env_put", response_model=EnvResponse)
def set_one(id: str, key: Key, body: SetValue, containers: Containers = Caller) -> EnvResponse:  # noqa: A002
    """Set or update one variable; effective on the next restart."""
    return containers.answer(id, "Environment variable updated", containers.merge(id, {key: body.value}))


@router.delete("/{id}/env/{key}", operation_id="delete_container_env", response_model=EnvResponse)
def delete_one(id: str, key: AnyKey, containers: Containers = Caller) -> EnvResponse:  # noqa: A002
    """Remove one variable; 200 whether or not it existed. `HOODY_` keys are refused."""
    containers.machines.record(containers.user, id)
    problem = key_violation(RULES, key)
    if problem is not None and RULES.code(problem) == "RESERVED_ENV_PREFIX":
        _refuse([problem])
    if problem is None:
        containers.store.delete_var(PLATFORM, containers.user, key, scope=id)
    stored = containers.store.get_vars(PLATFORM, containers.user, id)
    return containers.answer(id, "Environment variable deleted", stored)


@router.post("/{id}/restart", operation_id="restart_container", response_model=EnvResponse,
             responses={409: {"model": ErrorResponse, "description": "CONTAINER_NOT_RUNNING"}})
def restart(id: str, containers: Containers = Caller) -> EnvResponse:  # noqa: A002
    """Restart the container: it boots again with the stored map, which is then in sync."""
    containers.machines.restart(containers.user, id)  # 404 for another user's container
    return containers.answer(id, "Container restarted", containers.store.get_vars(PLATFORM, containers.user, id))


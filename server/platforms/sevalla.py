"""Sevalla: an application's env vars (`/v3/applications/{id}/env-vars`), one object per variable.

Each application has its own set (the store's scope is the application id); each variable is an
object with its own id (the store's id), `is_runtime` and `is_buildtime` flags (the store's
attributes) and creation and update times. Values are encrypted at rest (`run` gives the store a
cipher). Writes never reach a running application: a deploy (`POST /_envvars/v1/workloads/{id}/restart`)
runs the build with the `is_buildtime` variables in a sandbox of its own, then starts the app with the
`is_runtime` ones in another; a variable with both flags false reaches neither. In both the variables
live in memory only (the process environment file sits on a tmpfs of the sandbox), never on its disk.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from envvars.rules import RuleViolation, Violation, describe, key_json_schema, key_violation, value_json_schema
from envvars.rules import value_violation as rule_value_violation
from envvars.rules.sevalla import RULES
from envvars_server.deps import current_user, machines_of, store_of
from envvars_server.errors import ApiError, DomainError, Envelope, translator
from envvars_server.machines import (
    MEMORY_PROCESS_ENVIRONMENT,
    AgentDown,
    BootFailed,
    EnvSource,
    FreezeFailed,
    Machines,
    NotFound,
    NotRunning,
    Phase,
    QuotaExceeded,
    UnknownPhase,
)
from envvars_server.platform import Runtime
from envvars_server.store import Store, Variable

PLATFORM = "sevalla"
PREFIX = "/v3/applications"
# The page's pattern for every id: a uuid of versions 1-8 with the RFC 4122 variant, or the nil or max uuid.
UUID_PATTERN = (r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|"
                r"00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$")
HELP = "If you need assistance, please contact support."
CODES = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "conflict", 413: "payload-too-large", 422: "unprocessable-entity", 429: "rate-limited",
         500: "internal-error", 503: "service-unavailable"}
FAILURES: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, "application-not-found"), NotRunning: (409, "application-not-running"),
    QuotaExceeded: (403, "application-quota-exceeded"), BootFailed: (500, "deployment-failed"),
    AgentDown: (503, "service-unavailable"), FreezeFailed: (503, "service-unavailable"),
    UnknownPhase: (400, "bad-request"),
}
KEY_EXISTS = "env-var-key-exists"
VAR_NOT_FOUND = "env-var-not-found"
DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET = 25, 100, 10_000


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """Sevalla's error body: `{"message", "status", "data": {"code", "message"}}`."""
    return {"message": message, "status": status, "data": {"code": code or "error", "message": HELP}}


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, codes=CODES,
                    translate=translator(FAILURES, (500, "internal-error")))


class ErrorData(BaseModel):
    """The error's code and a hint."""

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Sevalla's error body."""

    message: str
    status: int
    data: ErrorData


class EnvVar(BaseModel):
    """One environment variable of an application (its value decrypted)."""

    id: str = Field(description="Unique identifier for the environment variable", pattern=UUID_PATTERN)
    app_id: str = Field(description="Identifier of the application this environment variable belongs to",
                        pattern=UUID_PATTERN)
    key: str = Field(description="Name of the environment variable. Unique within the application.")
    value: str = Field(description="Value of the environment variable. Stored encrypted at rest.")
    is_runtime: bool | None = Field(description="Whether this variable is available at runtime.")
    is_buildtime: bool | None = Field(description="Whether this variable is available during the build step.")
    created_at: str = Field(description="When the variable was created (RFC 3339, milliseconds)")
    updated_at: str = Field(description="When the variable was last modified (RFC 3339, milliseconds)")


class EnvVarList(BaseModel):
    """One page of an application's variables, in creation order, and how many there are in all."""

    data: list[EnvVar]
    total: int = Field(description="How many variables the application has")
    limit: int
    offset: int


KEY_DESCRIPTION = f"Name of the environment variable. Must be unique within the application scope. {describe(RULES)}"
VALUE_DESCRIPTION = "Value of the environment variable. Will be stored encrypted at rest."


class NewEnvVar(BaseModel):
    """Body of the create request."""

    model_config = ConfigDict(extra="ignore")
    key: StrictStr = Field(description=KEY_DESCRIPTION, json_schema_extra=key_json_schema(RULES))
    value: StrictStr = Field(description=VALUE_DESCRIPTION, json_schema_extra=value_json_schema(RULES))
    is_runtime: StrictBool = Field(True, description="Whether this variable is available at runtime. Defaults to true.")
    is_buildtime: StrictBool = Field(True, description="Whether this variable is available during the build step. "
                                                       "Defaults to true.")


CHANGEABLE = ("key", "value", "is_runtime", "is_buildtime")


class EnvVarChange(BaseModel):
    """Body of the update request: the fields to change (at least one)."""

    # The document says what the server requires: at least one of the fields, not null (a null is no change).
    model_config = ConfigDict(extra="ignore", json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in CHANGEABLE]})
    key: StrictStr | None = Field(None, description="New name for the environment variable. " + describe(RULES),
                                  json_schema_extra=key_json_schema(RULES))
    value: StrictStr | None = Field(None, description="New value for the environment variable. "
                                                      "Will be stored encrypted at rest.",
                                    json_schema_extra=value_json_schema(RULES))
    is_runtime: StrictBool | None = Field(None, description="Whether this variable is available at runtime")
    is_buildtime: StrictBool | None = Field(None, description="Whether this variable is available during the "
                                                              "build step")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description} for status, description in (
        (400, "bad-request (a malformed id or body), invalid-env-var-key, invalid-env-var-value, "
              "env-var-value-too-long or env-var-limit-exceeded"),
        (401, "unauthorized: missing or invalid API key"),
        (404, "application-not-found (also another user's application) or env-var-not-found"),
        (413, "payload-too-large"))
}
AppId = Annotated[str, Path(description="Application identifier", pattern=UUID_PATTERN)]
EnvVarId = Annotated[str, Path(description="Environment variable identifier", pattern=UUID_PATTERN)]

router = APIRouter(prefix=PREFIX, tags=["application-env-vars"], responses=ERRORS)


def runtime_env(variable: Variable) -> bool:
    """Whether a variable reaches the running application."""
    return bool(variable.attributes.get("is_runtime", True))


def buildtime_env(variable: Variable) -> bool:
    """Whether a variable reaches the build step."""
    return bool(variable.attributes.get("is_buildtime", True))


@contextmanager
def run(runtime: Runtime) -> Iterator[None]:
    """Every user's applications, each started with its stored runtime variables: recovered at start, stopped at
    the end."""
    store = runtime.store
    runtime.encrypt_at_rest(PLATFORM)

    def reaching(flag: Callable[[Variable], bool]) -> EnvSource:
        def env(record: Mapping[str, Any]) -> dict[str, str]:
            variables = store.variables(PLATFORM, record["owner_id"], record["id"])
            return {key: variable.value for key, variable in variables.items() if flag(variable)}
        return env

    machines = runtime.machines(PLATFORM, "applications", "application", reaching(runtime_env),
                                MEMORY_PROCESS_ENVIRONMENT, phases=(Phase("build", reaching(buildtime_env)),),
                                main_phase="runtime")
    with runtime.serving(machines, "application", _new_application):
        yield


def _new_application(owner: str, name: str) -> dict[str, Any]:
    """The record of a new application: an id in Sevalla's format (a uuid v4)."""
    return {"id": str(uuid.uuid4()), "owner_id": owner, "name": name, "mem_size_mib": 512, "fs_size_mib": 1024}


applications_of = machines_of(PLATFORM)


def shown(app_id: str, variable: Variable) -> EnvVar:
    """A stored variable as Sevalla shows it."""
    return EnvVar(id=variable.id, app_id=app_id, key=variable.key, value=variable.value,
                  is_runtime=runtime_env(variable), is_buildtime=buildtime_env(variable),
                  created_at=variable.created_at, updated_at=variable.updated_at)


def _refuse(problem: Violation | None) -> None:
    """400 with Sevalla's code for a broken rule, if any."""
    if problem is not None:
        raise ApiError(400, problem.message, RULES.code(problem))


def _exists(key: str) -> ApiError:
    return ApiError(409, f"an environment variable with the key {key!r} already exists in this application",
                    KEY_EXISTS)


class Applications:
    """One user's view of the applications and their variables."""

    def __init__(self, user: str = Depends(current_user), machines: Machines = Depends(applications_of),
                 store: Store = Depends(store_of)):
        self.user = user
        self.machines = machines
        self.store = store

    def check(self, app_id: str) -> None:
        """404 unless the application is this user's."""
        self.machines.record(self.user, app_id)

    def variables(self, app_id: str) -> list[Variable]:
        """The application's variables in creation order."""
        self.check(app_id)
        return list(self.store.variables(PLATFORM, self.user, app_id).values())

    def create(self, app_id: str, body: NewEnvVar) -> Variable:
        """A new variable; 409 when the key is taken."""
        self.check(app_id)
        _refuse(key_violation(RULES, body.key) or rule_value_violation(RULES, body.key, body.value))
        try:
            with self.store.edit(PLATFORM, self.user, app_id) as edit:
                if body.key in edit.variables():
                    raise _exists(body.key)
                return edit.upsert(body.key, body.value,
                                   {"is_runtime": body.is_runtime, "is_buildtime": body.is_buildtime})
        except RuleViolation as exc:  # the set would grow beyond the server's limits
            raise ApiError(400, exc.message, RULES.code(exc.violations[0])) from None

    def update(self, app_id: str, var_id: str, body: EnvVarChange) -> Variable:
        """Change the fields `body` gives; 404 for an unknown id, 409 when renamed onto a taken key."""
        self.check(app_id)
        changes = body.model_dump(exclude_none=True)
        if not changes:
            raise ApiError(400, f"request body: give at least one of {', '.join(CHANGEABLE)}", CODES[400])
        if body.key is not None:
            _refuse(key_violation(RULES, body.key))
        if body.value is not None:
            _refuse(rule_value_violation(RULES, body.key or "value", body.value))
        flags: dict[str, Any] = {name: changes[name] for name in ("is_runtime", "is_buildtime") if name in changes}
        try:
            with self.store.edit(PLATFORM, self.user, app_id) as edit:
                found = next((v for v in edit.variables().values() if v.id == var_id), None)
                if found is None:
                    raise ApiError(404, f"environment variable {var_id!r} not found in this application",
                                   VAR_NOT_FOUND)
                key = found.key
                if body.key is not None and body.key != key:
                    if body.key in edit.variables():
                        raise _exists(body.key)
                    key = edit.rename(key, body.key).key
                value = body.value if body.value is not None else found.value
                return edit.upsert(key, value, flags)
        except RuleViolation as exc:
            raise ApiError(400, exc.message, RULES.code(exc.violations[0])) from None

    def delete(self, app_id: str, var_id: str) -> None:
        """Remove a variable; 404 for an unknown id."""
        self.check(app_id)
        with self.store.edit(PLATFORM, self.user, app_id) as edit:
            found = next((v for v in edit.variables().values() if v.id == var_id), None)
            if found is None:
                raise ApiError(404, f"environment variable {var_id!r} not found in this application", VAR_NOT_FOUND)
            edit.delete(found.key)


Caller = Depends(Applications)


@router.get("/{id}/env-vars", operation_id="listEnvironmentVariablesV3", response_model=EnvVarList)
def list_env_vars(
    id: AppId,  # noqa: A002  (the documented name)
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Maximum number of items per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Number of items to skip")] = 0,
    applications: Applications = Caller,
) -> EnvVarList:
    """List an application's environment variables (values decrypted), ordered by creation time."""
    variables = applications.variables(id)
    page = [shown(id, variable) for variable in variables[offset:offset + limit]]
    return EnvVarList(data=page, total=len(variables), limit=limit, offset=offset)


@router.post("/{id}/env-vars", operation_id="createEnvironmentVariableV3", status_code=201, response_model=EnvVar,
             responses={409: {"model": ErrorResponse, "description": "env-var-key-exists: the key is taken"}})
def create_env_var(id: AppId, body: NewEnvVar, applications: Applications = Caller) -> EnvVar:  # noqa: A002
    """Create an environment variable; it takes effect at the next deployment."""
    return shown(id, applications.create(id, body))


@router.put("/{id}/env-vars/{env_var_id}", operation_id="updateEnvironmentVariableV3", response_model=EnvVar,
            responses={409: {"model": ErrorResponse, "description": "env-var-key-exists: the new key is taken"}})
def update_env_var(id: AppId, env_var_id: EnvVarId, body: EnvVarChange,  # noqa: A002
                   applications: Applications = Caller) -> EnvVar:
    """Update any of key, value, is_runtime, is_buildtime (the others are kept); it takes effect at the next
    deployment."""
    return shown(id, applications.update(id, env_var_id, body))


@router.delete("/{id}/env-vars/{env_var_id}", operation_id="deleteEnvironmentVariableV3", status_code=204,
               response_class=Response, responses={204: {"description": "Deleted"}})
def delete_env_var(id: AppId, env_var_id: EnvVarId, applications: Applications = Caller) -> Response:  # noqa: A002
    """Delete an environment variable; it leaves the application at the next deployment."""
    applications.delete(id, env_var_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)

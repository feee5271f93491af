"""Vertra: an app's environment variables (`/v1/apps/{id}/environments`, and the `/envs` routes Vertra's public
clients use), taking effect when the app starts.

Each app has its own set (the store's scope is the app id); each variable has an id (the store's), an optional
note (an attribute) and a creation time. Every write is one read-modify-write of the set, all or nothing, checked
against Vertra's rules on the set it would leave (at most 25 variables). Writes never reach a running app:
`POST /v1/apps/{id}/restart` boots it again with the stored set as its process environment. An app id is 32
lowercase hex characters; it may carry its owner's workspace (`appId-orgId`, or `?workspace_id=orgId`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from envvars.rules import RuleViolation, Violation, describe, show_key
from envvars.rules import violations as rule_violations
from envvars.rules.vertra import INVALID_BODY, RULES
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
)
from envvars_server.platform import Runtime
from envvars_server.platforms.vertra_bodies import DELETE_BODY, LIST_BODY, UPSERT_BODY, Entry, entries, keys_of
from envvars_server.store import Store, Variable

PLATFORM = "vertra"
PREFIX = "/v1/apps"
APP_NOT_FOUND = "APP_NOT_FOUND"
NOT_FOUND = "ENVIRONMENTS_NOT_FOUND"
VARIABLE_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # the store's ids: uuids, lowercase
CODES = {400: INVALID_BODY, 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
         413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}
FAILURES: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, APP_NOT_FOUND), NotRunning: (409, "APP_NOT_RUNNING"), QuotaExceeded: (403, "APP_QUOTA_EXCEEDED"),
    BootFailed: (500, "APP_START_FAILED"), AgentDown: (503, "SERVICE_UNAVAILABLE"),
    FreezeFailed: (503, "SERVICE_UNAVAILABLE"),
}


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """Vertra's error body: `{"status": "error", "code", "message"}`."""
    return {"status": "error", "code": code or "ERROR", "message": message}


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, codes=CODES, invalid_token_code="UNAUTHORIZED",
                    translate=translator(FAILURES, (500, "INTERNAL_ERROR")))


class ErrorResponse(BaseModel):
    """Vertra's error body."""

    status: Literal["error"]
    code: str
    message: str = Field(description="What is wrong: which key, which rule or limit (never a value)")


class EnvironmentVariable(BaseModel):
    """One environment variable of an app."""

    id: str = Field(description="The variable's identifier")
    key: str
    value: str
    note: str | None = Field(description="The variable's note, null when unset")
    created_at: str = Field(description="When the variable was created (RFC 3339, UTC, to the second)")


class Environments(BaseModel):
    """Every variable of the app after the request, in creation order."""

    status: Literal["success"]
    response: list[EnvironmentVariable]


class App(BaseModel):
    """An app, the workspace (organization) it belongs to, and its state."""

    id: str
    workspace_id: str
    state: str


class Restarted(BaseModel):
    """The app, started again with its stored variables."""

    status: Literal["success"]
    response: App


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description} for status, description in (
        (400, f"{INVALID_BODY}, INVALID_ENVIRONMENT, ENV_VARIABLE_TOO_LONG or ENV_LIMIT_EXCEEDED: "
              f"{describe(RULES)}"),
        (401, "UNAUTHORIZED: missing or invalid token"),
        (404, f"{APP_NOT_FOUND}: no such app of this user (another user's app too)"),
        (413, "PAYLOAD_TOO_LARGE"))
}
AppId = Annotated[str, Path(description="The app's id (32 lowercase hex characters); an app of an organization may "
                                        "be given as `appId-orgId`")]
Workspace = Annotated[str | None, Query(description="The organization (workspace) the app belongs to; the same as "
                                                    "`appId-orgId`")]

router = APIRouter(prefix=PREFIX, tags=["app-environments"], responses=ERRORS)


@contextmanager
def run(runtime: Runtime) -> Iterator[None]:
    """Every user's apps, each started with its stored set: recovered at start, stopped at the end."""
    machines = runtime.machines(PLATFORM, "apps", "app", runtime.own_sets(PLATFORM), PROCESS_ENVIRONMENT)
    with runtime.serving(machines, "app", _new_app):
        yield


def workspace_of(user: str) -> str:
    """The workspace (organization) id of a user: every app of the user belongs to it."""
    return hashlib.sha256(f"vertra workspace {user}".encode()).hexdigest()[:32]


def _new_app(owner: str, name: str) -> dict[str, Any]:
    """The record of a new app: an id in Vertra's format (32 lowercase hex characters, no `-`)."""
    return {"id": uuid.uuid4().hex, "owner_id": owner, "workspace_id": workspace_of(owner), "name": name,
            "mem_size_mib": 512, "fs_size_mib": 1024}


apps_of = machines_of(PLATFORM)


def shown(variable: Variable) -> EnvironmentVariable:
    """A stored variable as Vertra shows it."""
    return EnvironmentVariable(id=variable.id, key=variable.key, value=variable.value,
                               note=variable.attributes.get("note"), created_at=variable.created_at[:19] + "Z")


def answer(variables: Mapping[str, Variable]) -> Environments:
    """A set (as one write left it, or as read) in the success envelope."""
    return Environments(status="success", response=[shown(variable) for variable in variables.values()])


def _refuse(found: list[Violation]) -> None:
    """400 with Vertra's code for the first broken rule, if any."""
    if found:
        raise ApiError(400, found[0].message, RULES.code(found[0]))


class Apps:
    """One user's view of the apps and their variables."""

    def __init__(self, user: str = Depends(current_user), machines: Machines = Depends(apps_of),
                 store: Store = Depends(store_of)):
        self.user = user
        self.machines = machines
        self.store = store

    def app(self, given: str, workspace_id: str | None) -> str:
        """The app id `given` names (`appId`, `appId-orgId`), of this user and in `workspace_id` if given; 404 for
        any other, the same whether or not it exists."""
        app_id, dash, org = given.partition("-")
        workspace = workspace_of(self.user)
        if (dash and org != workspace) or (workspace_id is not None and workspace_id != workspace):
            raise NotFound(f"app {app_id!r} not found")
        self.machines.record(self.user, app_id)
        return app_id

    def answer(self, app_id: str) -> Environments:
        """The app's variables, in the success envelope."""
        return answer(self.store.variables(PLATFORM, self.user, app_id))

    def upsert(self, app_id: str, written: list[Entry]) -> Environments:
        """Create or edit each variable by key (the others kept), all or nothing, within Vertra's rules."""
        values = {entry.key: entry.value for entry in written}
        try:
            with self.store.edit(PLATFORM, self.user, app_id) as edit:
                _refuse(rule_violations(RULES, values, {**edit.variables(), **values}))
                for entry in written:
                    edit.upsert(entry.key, entry.value, entry.attributes)
                left = edit.variables()
        except RuleViolation as exc:  # the set would grow beyond the server's own limits
            raise ApiError(400, exc.message, RULES.code(exc.violations[0])) from None
        return answer(left)

    def delete(self, app_id: str, matches: Mapping[str, Any], what: str) -> Environments:
        """Remove every variable whose `key` or `id` (the field `matches` names) is listed; 404 when none is."""
        [(field, wanted)] = matches.items()
        with self.store.edit(PLATFORM, self.user, app_id) as edit:
            found = [v.key for v in edit.variables().values() if getattr(v, field) in wanted]
            if not found:
                raise ApiError(404, f"no environment variable of this app has {what}", NOT_FOUND)
            for key in found:
                edit.delete(key)
            left = edit.variables()
        return answer(left)


Caller = Depends(Apps)
UpsertBody = Annotated[Any, Body(description=f"`{{\"environments\": [{{key, value, note?}}, ...]}}`: 1 to 25 "
                                             f"variables, each key once. {describe(RULES)}",
                                 json_schema_extra=UPSERT_BODY)]
ListBody = Annotated[Any, Body(description="One `{key, value, note?}` object, an array of them, or `{\"environments\": "
                                           f"[...]}}`: 1 to 25 variables, each key once. {describe(RULES)}",
                               json_schema_extra=LIST_BODY)]
DeleteBody = Annotated[Any, Body(description="`{\"keys\": [...]}`: the keys to remove, each once",
                                 json_schema_extra=DELETE_BODY)]


@router.put("/{id}/environments", operation_id="putAppEnvironments", response_model=Environments)
def put_environments(id: AppId, body: UpsertBody, workspace_id: Workspace = None,  # noqa: A002  (documented name)
                     apps: Apps = Caller) -> Environments:
    """Create or edit environment variables by key (keys not in the body are kept); effective at the next start."""
    app_id = apps.app(id, workspace_id)
    return apps.upsert(app_id, entries(body, wrapped_only=True))


@router.get("/{id}/envs", operation_id="listAppEnvs", response_model=Environments)
def list_envs(id: AppId, workspace_id: Workspace = None, apps: Apps = Caller) -> Environments:  # noqa: A002
    """Every environment variable of the app, in creation order."""
    return apps.answer(apps.app(id, workspace_id))


@router.post("/{id}/envs", operation_id="postAppEnvs", response_model=Environments)
def post_envs(id: AppId, body: ListBody, workspace_id: Workspace = None,  # noqa: A002
              apps: Apps = Caller) -> Environments:
    """Create or edit environment variables by key, as `PUT /environments` does; effective at the next start."""
    app_id = apps.app(id, workspace_id)
    return apps.upsert(app_id, entries(body, wrapped_only=False))


@router.delete("/{id}/envs", operation_id="deleteAppEnvs", response_model=Environments,
               responses={404: {"model": ErrorResponse, "description": f"{APP_NOT_FOUND}, or {NOT_FOUND}: no listed "
                                                                       "key is a variable of the app"}})
def delete_envs(id: AppId, body: DeleteBody, workspace_id: Workspace = None,  # noqa: A002
                apps: Apps = Caller) -> Environments:
    """Remove the listed keys (those the app has); effective at the next start."""
    app_id = apps.app(id, workspace_id)
    keys = keys_of(body)
    return apps.delete(app_id, {"key": keys}, "any of the keys " + ", ".join(map(show_key, keys[:10])))


@router.delete("/{id}/envs/{envId}", operation_id="deleteAppEnv", response_model=Environments,
               responses={404: {"model": ErrorResponse, "description": f"{APP_NOT_FOUND}, or {NOT_FOUND}: no "
                                                                       "variable of the app has that id"}})
def delete_env(id: AppId, env_id: Annotated[str, Path(alias="envId", description="The variable's id",  # noqa: A002
                                                      pattern=VARIABLE_ID)],
               workspace_id: Workspace = None, apps: Apps = Caller) -> Environments:
    """Remove one variable by its id; effective at the next start."""
    app_id = apps.app(id, workspace_id)
    return apps.delete(app_id, {"id": {env_id}}, f"the id {show_key(env_id)}")


@router.post("/{id}/restart", operation_id="restartApp", response_model=Restarted,
             responses={409: {"model": ErrorResponse, "description": "APP_NOT_RUNNING"}})
def restart(id: AppId, workspace_id: Workspace = None, apps: Apps = Caller) -> Restarted:  # noqa: A002
    """Restart the app: it starts again with the stored variables as its environment."""
    app_id = apps.app(id, workspace_id)
    record = apps.machines.restart(apps.user, app_id)
    return Restarted(status="success", response=App(id=app_id, workspace_id=workspace_of(apps.user),
                                                    state=record["state"]))

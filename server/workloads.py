"""The neutral `/_envvars/v1` surface: make a workload of any platform, see what it sees, restart it.

Tests, demos and users need the things variables belong to (containers, apps, CVMs, VMs) without
each platform's own provisioning API. A workload made here is owned by the token's user, created
running, and addressed by an id in its platform's own format, so the platform's routes take it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from envvars_server.deps import current_user, workloads_of
from envvars_server.errors import ApiError, DomainError, Envelope
from envvars_server.machines import (
    AgentDown,
    FreezeFailed,
    Machines,
    NotFound,
    NotRunning,
    QuotaExceeded,
    UnknownPhase,
)

PREFIX = "/_envvars/v1"
STATUS: dict[type[DomainError], int] = {
    NotFound: 404, NotRunning: 409, QuotaExceeded: 403, AgentDown: 503, FreezeFailed: 503, UnknownPhase: 400}


@dataclass(frozen=True)
class Workloads:
    """What a platform offers on this surface: its workloads, their kind, a new record by (owner, name, and the
    platform's options as keywords), and those options, each with the values it takes (the first the default)."""

    machines: Machines
    kind: str
    new_record: Callable[..., dict[str, Any]]
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def chosen(self, platform: str, given: Mapping[str, Any]) -> dict[str, str]:
        """Every option of a new workload: those `given`, the defaults for the rest; 400 for any other."""
        for name, value in given.items():
            if name not in self.options:
                takes = ", ".join(sorted(self.options)) or "none"
                raise ApiError(400, f"platform {platform!r} takes no option {name[:64]!r} (its options: {takes})")
            if value not in self.options[name]:
                raise ApiError(400, f"option {name!r} of platform {platform!r} is one of "
                                    f"{', '.join(self.options[name])}")
        return {name: given.get(name, values[0]) for name, values in self.options.items()}


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """`{"error": <reason>}`."""
    return {"error": message}


def translate(error: DomainError) -> ApiError:
    """This surface's status for a workload failure."""
    return ApiError(STATUS.get(type(error), 500), error.message)


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, translate=translate)


class ErrorResponse(BaseModel):
    """The error body of this surface."""

    error: str


class NewWorkload(BaseModel):
    """A workload to make; a platform's options (see each property's description) may be given too."""

    model_config = ConfigDict(extra="allow")
    platform: StrictStr = Field(description="The platform it belongs to (its name, as in the API paths).")
    name: StrictStr = Field(min_length=1, max_length=128, description="A display name.")


def document_platforms(app: FastAPI, names: Sequence[str], options: Mapping[str, Mapping[str, tuple[str, ...]]]) \
        -> None:
    """Name the platforms `NewWorkload.platform` takes in the served document (an enum of the platform list), and
    each platform's options (`options`: by platform, each option's values), so a request the document calls valid
    is one the server accepts."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # cached by FastAPI: setting the enum again is a no-op
        schema = document.get("components", {}).get("schemas", {}).get(NewWorkload.__name__)
        if schema is not None:
            schema["properties"]["platform"]["enum"] = list(names)
            for platform, taken in options.items():
                for name, values in taken.items():
                    schema["properties"][name] = {"type": "string", "enum": list(values), "description": (
                        f"Only with platform `{platform}` (default `{values[0]}`)")}
                    schema.setdefault("dependentSchemas", {})[name] = {
                        "properties": {"platform": {"const": platform}}}
            schema["additionalProperties"] = False
        return document

    app.openapi = openapi  # type: ignore[method-assign]


class Workload(BaseModel):
    """A workload: its id in its platform's own format, the platform, and what kind of thing it is."""

    id: str
    platform: str
    kind: str
    state: str


class Environment(BaseModel):
    """What a login shell started in the workload sees right now."""

    vars: dict[str, str]


router = APIRouter(prefix=PREFIX, tags=["workloads"], responses={
    400: {"model": ErrorResponse, "description": "Validation error"},
    401: {"model": ErrorResponse, "description": "Unauthorized"},
    404: {"model": ErrorResponse, "description": "No such workload of this user"},
})


Hosts = Depends(workloads_of)


def _find(hosts: dict[str, Workloads], owner: str, workload_id: str) -> tuple[str, Workloads, dict[str, Any]]:
    for platform, host in hosts.items():
        record = host.machines.store.get_machine(platform, owner, workload_id)
        if record is not None:
            return platform, host, record
    raise NotFound(f"workload {workload_id!r} not found")


def _shown(platform: str, host: Workloads, record: dict[str, Any]) -> Workload:
    return Workload(id=record["id"], platform=platform, kind=host.kind, state=record["state"])


@router.post("/workloads", operation_id="make_workload", status_code=201, response_model=Workload,
             responses={403: {"model": ErrorResponse, "description": "The user's quota of workloads is reached"}})
def make(body: NewWorkload, user: str = Depends(current_user), hosts: dict[str, Workloads] = Hosts) -> Workload:
    """Make a running workload of a platform (a container, an app, a CVM, a VM), owned by the caller."""
    host = hosts.get(body.platform)
    if host is None:
        raise ApiError(400, f"platform {body.platform!r} has no workloads here; known: {', '.join(sorted(hosts))}")
    options = host.chosen(body.platform, body.model_extra or {})
    workload_id = host.machines.create(host.new_record(user, body.name, **options))
    return _shown(body.platform, host, host.machines.record(user, workload_id))


@router.get("/workloads/{workload_id}/environment", operation_id="workload_environment", response_model=Environment,
            responses={409: {"model": ErrorResponse, "description": "The workload (or that phase) is not running"}})
def environment(workload_id: str, phase: str | None = Query(
                    None, description="Which step of the workload's deploy to look into, where its platform has "
                    "phases (a phase name such as `build`; default: the workload itself, its last phase); an unknown "
                    "phase, or any phase on a platform without phases, is refused with 400."),
                user: str = Depends(current_user), hosts: dict[str, Workloads] = Hosts) -> Environment:
    """The environment a login shell started in the workload (or in its deploy's `phase`) sees right now, read from
    inside it."""
    _, host, _ = _find(hosts, user, workload_id)
    return Environment(vars=host.machines.login_env(user, workload_id, phase))


@router.post("/workloads/{workload_id}/restart", operation_id="restart_workload", response_model=Workload,
             responses={409: {"model": ErrorResponse, "description": "The workload is not running"}})
def restart(workload_id: str, user: str = Depends(current_user), hosts: dict[str, Workloads] = Hosts) -> Workload:
    """Restart (deploy) the workload: its phases run again, each with its own set, then it boots again with its
    platform's stored variables."""
    platform, host, _ = _find(hosts, user, workload_id)
    return _shown(platform, host, host.machines.restart(user, workload_id))

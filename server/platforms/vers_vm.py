"""Vers orchestrator: the VM lifecycle routes (`/api/v1/vm/...`, `/api/v1/system/version`)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, Strict, StrictBool, StrictStr

from envvars_server.deps import current_user
from envvars_server.errors import ApiError
from envvars_server.platform import Runtime
from envvars_server.platforms.vers import ENVELOPE, ERRORS, PLATFORM, PREFIX, ErrorResponse
from envvars_server.platforms.vers_machines import VersVms
from envvars_server.sandbox.protocol import DEFAULT_EXEC_TIMEOUT_S, MAX_EXEC_TIMEOUT_S
from envvars_server.slots import UserSlots

__all__ = ["ENVELOPE", "router", "run"]

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "No such VM or commit"}}
NOT_READY: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The VM is not running (booting, paused, sleeping or dead)"},
}
GUEST: dict[int | str, dict[str, Any]] = {
    **NOT_READY,
    503: {"model": ErrorResponse, "description": "The VM's agent did not answer"},
    504: {"model": ErrorResponse, "description": "The command or file operation timed out in the VM"},
}
QUOTA: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "The new VMs would exceed the per-user VM quota"},
}
FREEZE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "The VM's processes could not be frozen for the pause; try again"},
}
BUSY: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Too many VM operations in flight for this user; see Retry-After"},
}
router = APIRouter(prefix=PREFIX, tags=["vm"], responses={**ERRORS, **NOT_FOUND, **BUSY})


def _whole_number(value: object) -> object:
    """JSON Schema's `integer` includes 5.0: accept a float without a fraction as that int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# JSON Schema's `integer`: never a bool or a string, and 5.0 is 5. Bounds go before it in an
# `Annotated`, or they reach the OpenAPI document as unknown `ge`/`le` keywords.
WHOLE = BeforeValidator(_whole_number)
# What the guest agent accepts as a path, documented (the agent checks it and names the rule):
# absolute, no `..` component, no NUL. Whether it exists, or stays inside the root through
# symlinks, depends on the VM, so those are 404/400 answers the document cannot express.
GUEST_PATH: dict[str, JsonValue] = {"pattern": r"^/(?!(?:.*/)?\.\.(?:/|$))[^\u0000]*$"}
NO_NUL: dict[str, JsonValue] = {"pattern": r"^[^\u0000]*$"}
BASE64: dict[str, JsonValue] = {"pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"}


@contextmanager
def run(runtime: Runtime) -> Iterator[None]:
    """The VMs of every user, injected with their owner's Vers set: recovered at start, stopped at the end.

    Option `vm_slots` (`UserSlots`): how many VM operations one user may have in flight.
    """
    store = runtime.store
    machines = runtime.machines(PLATFORM, "vms", "VM", lambda record: store.get_vars(PLATFORM, record["owner_id"]))
    runtime.app.state.vers_vms = VersVms(store, machines, runtime.data_dir / "commits")
    runtime.app.state.vm_slots = runtime.options.get("vm_slots") or UserSlots()
    with runtime.serving(machines, "vm", _new_workload):
        yield


def _new_workload(owner: str, name: str) -> dict[str, Any]:
    """A VM made on the neutral workloads surface: the default config, labelled with its display name."""
    return VersVms.new_record(owner, VmConfig(labels={"name": name}).resolved())


async def vms_of(request: Request) -> VersVms:  # async: no thread hop (see deps)
    """The server's VMs."""
    vms: VersVms = request.app.state.vers_vms
    return vms


async def slots_of(request: Request) -> UserSlots:
    """The per-user slots that VM operations run in (see `server/slots.py`)."""
    slots: UserSlots = request.app.state.vm_slots
    return slots


class VmConfig(BaseModel):
    """Configuration of a new root VM; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    fs_size_mib: Annotated[int, Strict(), Field(ge=64, le=1_048_576), WHOLE] | None = Field(
        default=None, description="Disk size, MiB.")
    image_name: Literal["default"] | None = Field(default=None, description="Must be 'default'.")
    kernel_name: Literal["default.bin"] | None = Field(default=None, description="Must be 'default.bin'.")
    labels: dict[StrictStr, StrictStr] | None = None
    mem_size_mib: Annotated[int, Strict(), Field(ge=128, le=262_144), WHOLE] | None = Field(
        default=None, description="RAM, MiB.")
    vcpu_count: Annotated[int, Strict(), Field(ge=1, le=64), WHOLE] | None = Field(default=None, description="vCPUs.")

    def resolved(self) -> dict[str, Any]:
        """The config with defaults filled in."""
        return {
            "fs_size_mib": self.fs_size_mib or 1024,
            "mem_size_mib": self.mem_size_mib or 512,
            "vcpu_count": self.vcpu_count or 1,
            "labels": self.labels or {},
        }


class NewRootRequest(BaseModel):
    """Request body for POST /api/v1/vm/new_root."""

    vm_config: VmConfig


class NewVmResponse(BaseModel):
    """Response body for new VM requests."""

    vm_id: str


class NewVmsResponse(BaseModel):
    """Response body for branch requests."""

    vms: list[NewVmResponse]


class VmSummary(BaseModel):
    """One VM in GET /api/v1/vm."""

    created_at: str
    owner_id: str
    state: str
    vm_id: str
    labels: dict[str, str] | None = None


class VmMetadataResponse(BaseModel):
    """Response for GET /api/v1/vm/{vm_id}/metadata."""

    created_at: str
    ip: str
    mem_size_mib: int
    owner_id: str
    state: Literal["booting", "running", "paused", "sleeping", "dead"]
    vcpu_count: int
    vm_id: str
    deleted_at: str | None = None
    grandparent_vm_id: str | None = None
    parent_commit_id: str | None = None


class VmUpdateStateRequest(BaseModel):
    """Request body for PATCH /api/v1/vm/{vm_id}/state."""

    state: Literal["Running", "Paused", "Sleeping"]


class CommitVmRequest(BaseModel):
    """Request body for POST /api/v1/vm/{vm_id}/commit."""

    name: StrictStr | None = None
    description: StrictStr | None = None


class VmCommitResponse(BaseModel):
    """Response body for POST /api/v1/vm/{vm_id}/commit."""

    commit_id: str


def _commit_id_documented_as_required(schema: dict[str, Any]) -> None:
    schema["required"] = ["commit_id"]
    schema["properties"]["commit_id"] = {"type": "string", "title": "Commit Id"}


class FromCommitRequest(BaseModel):
    """Request body for POST /api/v1/vm/from_commit (`commit_id`; tags are not kept here)."""

    # Vers also accepts `tag_name` or `ref`; this server keeps no tags, so it documents what it needs.
    model_config = ConfigDict(json_schema_extra=_commit_id_documented_as_required)
    commit_id: StrictStr | None = None
    tag_name: StrictStr | None = None
    ref: StrictStr | None = None


class VmExecRequest(BaseModel):
    """Request body for POST /api/v1/vm/{vm_id}/exec."""

    command: list[StrictStr] = Field(min_length=1, json_schema_extra={"items": {"type": "string", **NO_NUL}})
    env: dict[StrictStr, StrictStr] | None = Field(default=None, json_schema_extra={
        "propertyNames": {"minLength": 1, "pattern": r"^[^=\u0000]*$"}, "additionalProperties": NO_NUL})
    exec_id: StrictStr | None = None
    stdin: StrictStr | None = None
    timeout_secs: Annotated[int, Strict(), Field(ge=0, le=MAX_EXEC_TIMEOUT_S), WHOLE] | None = Field(
        default=None, description=f"Seconds before the command is killed; absent or 0: {DEFAULT_EXEC_TIMEOUT_S}.")
    working_dir: StrictStr | None = Field(default=None, json_schema_extra=NO_NUL)


class VmExecResponse(BaseModel):
    """Response body for POST /api/v1/vm/{vm_id}/exec."""

    exit_code: int
    stdout: str
    stderr: str
    exec_id: str | None = None


class VmReadFileResponse(BaseModel):
    """Response body for GET /api/v1/vm/{vm_id}/files."""

    content_b64: str


class VmWriteFileRequest(BaseModel):
    """Request body for PUT /api/v1/vm/{vm_id}/files."""

    path: StrictStr = Field(json_schema_extra=GUEST_PATH)
    content_b64: StrictStr = Field(default="", json_schema_extra=BASE64)
    create_dirs: StrictBool | None = False
    mode: Annotated[int, Strict(), Field(ge=0, le=0o7777), WHOLE] | None = 0o644


class VmDeleteResponse(BaseModel):
    """Response body for DELETE /api/v1/vm/{vm_id}."""

    vm_id: str


class OrchestratorVersion(BaseModel):
    """Response for GET /api/v1/system/version."""

    executable_name: str
    git_hash: str
    workspace_version: str


Caller = Depends(current_user)
Vms = Depends(vms_of)
Slots = Depends(slots_of)


@router.post("/vm/new_root", operation_id="create_new_root_vm", status_code=201, response_model=NewVmResponse,
             responses=QUOTA)
async def new_root(body: NewRootRequest, wait_boot: bool = False, user: str = Caller, vms: VersVms = Vms,
                   slots: UserSlots = Slots) -> Any:
    """Create and boot a root VM; its `/etc/environment` is the caller's env set at this moment."""
    return {"vm_id": await slots.run(user, lambda: vms.create(user, body.vm_config.resolved(), wait=wait_boot))}


@router.get("/vm", operation_id="list_vms", response_model=list[VmSummary])
def list_vms(user: str = Caller, vms: VersVms = Vms) -> Any:
    """The caller's VMs."""
    return vms.machines.list(user)


@router.get("/vm/{vm_id}/metadata", operation_id="get_vm_metadata", response_model=VmMetadataResponse)
def metadata(vm_id: str, user: str = Caller, vms: VersVms = Vms) -> Any:
    """One VM's metadata."""
    return vms.machines.record(user, vm_id)


@router.patch("/vm/{vm_id}/state", operation_id="update_vm_state", responses={**NOT_READY, **FREEZE})
async def update_state(vm_id: str, body: VmUpdateStateRequest, user: str = Caller, vms: VersVms = Vms,
                       slots: UserSlots = Slots) -> Any:
    """Pause (`Paused`/`Sleeping`) or resume (`Running`) a VM."""
    await slots.run(user, lambda: vms.machines.set_state(user, vm_id, body.state.lower()))
    return {}


@router.post("/vm/{vm_or_commit_id}/branch", operation_id="branch_vm", status_code=201,
             response_model=NewVmsResponse, responses={**NOT_READY, **QUOTA, **FREEZE})
async def branch(
    vm_or_commit_id: str, count: int = Query(default=1, ge=1, le=100), keep_paused: bool = False,
    user: str = Caller, vms: VersVms = Vms, slots: UserSlots = Slots,
) -> Any:
    """New VMs from a VM (committed first) or a commit; each boots with the current env set."""
    vm_ids = await slots.run(user, lambda: vms.branch(user, vm_or_commit_id, count, keep_paused))
    return {"vms": [{"vm_id": vm_id} for vm_id in vm_ids]}


@router.post("/vm/{vm_id}/commit", operation_id="commit_vm", status_code=201, response_model=VmCommitResponse,
             responses={**NOT_READY, **FREEZE})
async def commit(
    vm_id: str, body: CommitVmRequest | None = None, keep_paused: bool = False,
    user: str = Caller, vms: VersVms = Vms, slots: UserSlots = Slots,
) -> Any:
    """Snapshot a VM's filesystem; the env set is not part of a commit."""
    request = body or CommitVmRequest()
    return {"commit_id": await slots.run(user, lambda: vms.commit(
        user, vm_id, keep_paused=keep_paused, name=request.name, description=request.description))}


@router.post("/vm/from_commit", operation_id="restore_from_commit", status_code=201, response_model=NewVmResponse,
             responses=QUOTA)
async def from_commit(body: FromCommitRequest, user: str = Caller, vms: VersVms = Vms,
                      slots: UserSlots = Slots) -> Any:
    """A new VM from a commit, booted with the caller's current env set."""
    commit_id = body.commit_id
    if commit_id is None:
        raise ApiError(400, "commit_id is required: the reference server keeps no tags or repositories")
    return {"vm_id": (await slots.run(user, lambda: vms.branch(user, commit_id, 1)))[0]}


@router.delete("/vm/{vm_id}", operation_id="delete_vm", response_model=VmDeleteResponse)
async def delete(vm_id: str, user: str = Caller, vms: VersVms = Vms, slots: UserSlots = Slots) -> Any:
    """Stop a VM and remove it."""
    await slots.run(user, lambda: vms.machines.delete(user, vm_id))
    return {"vm_id": vm_id}


@router.post("/vm/{vm_id}/exec", operation_id="exec_vm", response_model=VmExecResponse, responses=GUEST)
async def exec_command(vm_id: str, body: VmExecRequest, user: str = Caller, vms: VersVms = Vms,
                       slots: UserSlots = Slots) -> Any:
    """Run a command in the VM with the environment a login shell there gets."""
    result = await slots.run(user, lambda: vms.machines.exec(user, vm_id, {
        "command": body.command,
        "env": body.env,
        "working_dir": body.working_dir,
        "timeout_s": body.timeout_secs or None,
        "stdin": (body.stdin or "").encode(),
    }))
    return {**result, "exec_id": body.exec_id}


@router.get("/vm/{vm_id}/files", operation_id="read_file_vm", response_model=VmReadFileResponse, responses=GUEST)
async def read_file(
    vm_id: str, path: Annotated[str, Query(json_schema_extra=GUEST_PATH)], user: str = Caller, vms: VersVms = Vms,
    slots: UserSlots = Slots,
) -> Any:
    """A file from inside the VM, base64-encoded."""
    content = await slots.run(user, lambda: vms.machines.read_file(user, vm_id, path))
    return {"content_b64": base64.b64encode(content).decode()}


@router.put("/vm/{vm_id}/files", operation_id="write_file_vm", responses=GUEST)
async def write_file(vm_id: str, body: VmWriteFileRequest, user: str = Caller, vms: VersVms = Vms,
                     slots: UserSlots = Slots) -> Any:
    """Write a file inside the VM."""
    try:
        content = base64.b64decode(body.content_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "content_b64 is not valid base64") from None
    mode = 0o644 if body.mode is None else body.mode
    create_dirs = bool(body.create_dirs)
    await slots.run(user, lambda: vms.machines.write_file(user, vm_id, body.path, content, mode=mode,
                                                          create_dirs=create_dirs))
    return {}


@router.get("/system/version", operation_id="version_handler", response_model=OrchestratorVersion)
def version(user: str = Caller) -> Any:
    """The orchestrator's version."""
    return {"executable_name": "orchestrator", "git_hash": "envvars-reference", "workspace_version": "0.1.0"}

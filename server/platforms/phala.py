"""Phala: a CVM's encrypted environment (`PATCH /api/v1/cvms/{cvm_id}/envs`), the KMS that holds each app's key,
and the TEE side that opens the set at boot.

Each CVM belongs to an app with an X25519 key pair in the server's KMS (`server/kms.py`). Clients seal the whole
set to the app's public key (`envvars.sealed_env`); every update replaces it. The server keeps the ciphertext as
received, never the plaintext: the CVM's stored state (the store's set scoped to the CVM) is the sealed set, the
allowed keys (`allowed_envs`) and the compose hashes issued for an on-chain KMS. An accepted update answers 202
and restarts the CVM in the background; its new boot opens the set and writes only the variables whose keys are
allowed, into the CVM's memory (a tmpfs of its sandbox), never its disk. With an on-chain KMS, a change of the
allowed keys first needs its compose hash registered on chain (`server/chain.py`): 465, then 466-468 for a bad
proof.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from envvars import sealed_env
from envvars.rules import key_violation, value_violation
from envvars.rules.phala import RULES
from envvars_server.chain import Ledger, plain_hash
from envvars_server.deps import machines_of, store_of, user_of
from envvars_server.errors import ApiError, DomainError, Envelope, translator
from envvars_server.kms import Kms
from envvars_server.machines import (
    MEMORY_PROCESS_ENVIRONMENT,
    AgentDown,
    BootFailed,
    FreezeFailed,
    MachineError,
    Machines,
    NotFound,
    NotRunning,
    QuotaExceeded,
)
from envvars_server.platform import Runtime
from envvars_server.store import Store

log = logging.getLogger("envvars.phala")

PLATFORM = "phala"
PREFIX = "/api/v1/cvms"
KMS_TYPES = ("phala", "onchain")
OPTIONS = {"kms": KMS_TYPES}  # a new CVM's KMS on the neutral surface: Phala's (default) or an on-chain one
SEALED, ALLOWED, ISSUED = "encrypted_env", "allowed_envs", "issued:"  # the CVM's stored state, by name
HASH_LIFETIME_S = 7 * 86400
CHAIN_ID = 8453  # Base, where Phala's on-chain KMS lives
FAILURES: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, ""), NotRunning: (409, ""), QuotaExceeded: (403, ""), BootFailed: (500, ""),
    AgentDown: (503, ""), FreezeFailed: (503, ""),
}
# Phala's structured errors of the two-phase flow: (status, error_code, message).
REGISTRATION_REQUIRED = (465, "ERR-01-005", "Compose hash registration required on-chain")
HASH_INVALID = (466, "ERR-01-006", "Compose hash invalid or expired")
TX_FAILED = (467, "ERR-01-007", "Transaction verification failed")
HASH_NOT_ALLOWED = (468, "ERR-01-008", "Compose hash not allowed")


def render_error(status: int, code: str | None, message: str) -> dict[str, Any]:
    """FastAPI's `{"detail": message}`, or Phala's structured error where it has a code (`ERR-...`)."""
    if code and code.startswith("ERR-"):
        return {"error_code": code, "message": message, "details": [], "suggestions": [], "links": []}
    return {"detail": message}


ENVELOPE = Envelope(prefix=PREFIX, render=render_error, validation_status=422, validation_errors=True,
                    token_header="x-api-key", translate=translator(FAILURES, (500, "")))


class Detail(BaseModel):
    """FastAPI's error body."""

    detail: str


class ErrorDetail(BaseModel):
    """One field of a structured error."""

    field: str
    value: Any = None
    message: str | None = None


class StructuredError(BaseModel):
    """Phala's structured error (the two-phase flow)."""

    error_code: str
    message: str
    details: list[ErrorDetail]
    suggestions: list[str]
    links: list[str]


class KmsInfo(BaseModel):
    """The KMS that holds the app's key; `chain_id` and the contract for an on-chain KMS."""

    id: str
    slug: str
    version: str
    chain_id: int | None
    kms_contract_address: str | None
    encrypted_env_pubkey: str = Field(description="The app's X25519 public key (hex): seal the env set to it")


class Cvm(BaseModel):
    """A CVM, its app, its status and its KMS."""

    id: str
    name: str
    app_id: str
    status: str = Field(description="`running`; `restarting` while an update is applied; `starting`, `stopped`")
    in_progress: bool = Field(description="Whether an update is being applied")
    kms_info: KmsInfo
    created_at: str


class AppCompose(BaseModel):
    """The app compose the CVM runs; its hash is what an on-chain KMS allows."""

    model_config = ConfigDict(extra="allow")
    manifest_version: int
    name: str
    runner: str
    docker_compose_file: str
    kms_enabled: bool
    allowed_envs: list[str]


class EnvUpdate(BaseModel):
    """Body of the update."""

    encrypted_env: StrictStr = Field(description="Encrypted env blob as hex string: X25519 + AES-256-GCM to the "
                                                 "app's `encrypted_env_pubkey`; the whole set")
    env_keys: list[StrictStr] | None = Field(None, description="Allowed env var names (replaces `allowed_envs`). "
                                                               "Changes trigger verification for contract-owned KMS.")
    compose_hash: StrictStr | None = Field(None, description="Hash from Phase 1 response (Phase 2 only)")
    transaction_hash: StrictStr | None = Field(None, description="Transaction hash proving on-chain registration "
                                                                 "(Phase 2 only)")


class UpdateAccepted(BaseModel):
    """The update is applied in the background: the CVM restarts with the new set."""

    status: str
    message: str
    correlation_id: str
    allowed_envs_changed: bool


def structured(status: int, code: str, message: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": StructuredError, "description": f"{code}: {message}"}}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Detail, "description": "Authentication required (the `X-API-Key` header)"},
    403: {"model": Detail, "description": "CVM not in workspace"},
    404: {"model": Detail, "description": "CVM not found"},
}
CvmId = Annotated[str, Path(description="The CVM's id")]

router = APIRouter(prefix=PREFIX, tags=["CVMs"], responses=ERRORS)


class Service:
    """The platform's state beside its workloads: the KMS, the ledger, the clock, the updates in progress."""

    def __init__(self, runtime: Runtime, machines: Machines, kms: Kms):
        self.store = runtime.store
        self.machines = machines
        self.kms = kms
        self.clock = runtime.clock
        self.ledger: Ledger = runtime.app.state.chain
        self.updating: dict[str, str] = {}  # CVM id -> correlation id of the update being applied
        self.lock = threading.Lock()

    def state(self, record: Mapping[str, Any]) -> tuple[str, list[str]]:
        """A CVM's sealed set (hex, '' for none) and allowed keys."""
        stored = self.store.get_vars(PLATFORM, record["owner_id"], record["id"])
        return stored.get(SEALED, ""), json.loads(stored.get(ALLOWED, "[]"))

    def delivered(self, record: Mapping[str, Any]) -> dict[str, str]:
        """What a boot of the CVM receives: the stored set opened with its app's key, the allowed keys only."""
        blob, allowed = self.state(record)
        pairs = sealed_env.open(self.kms.private_key(record["app_id"]), blob) if blob else []
        return {key: value for key, value in pairs if key in allowed}


@contextmanager
def run(runtime: Runtime) -> Iterator[None]:
    """Every user's CVMs, each booted with its opened set: recovered at start, stopped at the end."""
    keys = Kms(runtime.store, runtime.cipher)
    keys.import_legacy(runtime.data_dir)
    service: Service

    def new_cvm(owner: str, name: str, kms: str = KMS_TYPES[0]) -> dict[str, Any]:
        """The record of a new CVM (a uuid) of a new app (40 hex characters, as Phala's), its key pair made."""
        app_id = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        keys.create(app_id)
        return {"id": str(uuid.uuid4()), "owner_id": owner, "name": name, "app_id": app_id, "kms": kms,
                "mem_size_mib": 512, "fs_size_mib": 1024}

    def delivered(record: Mapping[str, Any]) -> dict[str, str]:
        return service.delivered(record)

    machines = runtime.machines(PLATFORM, "cvms", "CVM", delivered, MEMORY_PROCESS_ENVIRONMENT)
    service = Service(runtime, machines, keys)
    runtime.app.state.phala = service
    with runtime.serving(machines, "cvm", new_cvm):
        yield


cvms_of = machines_of(PLATFORM)


async def service_of(request: Request) -> Service:
    """The platform's service."""
    found: Service = request.app.state.phala
    return found


def compose_of(record: Mapping[str, Any], allowed: list[str]) -> dict[str, Any]:
    """The app compose of a CVM with `allowed` as its allowed keys."""
    return {"manifest_version": 2, "name": record["name"], "runner": "docker-compose",
            "docker_compose_file": "services:\n  app:\n    image: envvars/cvm\n", "kms_enabled": True,
            "allowed_envs": allowed}


def compose_hash(record: Mapping[str, Any], allowed: list[str]) -> str:
    """The SHA-256 of the app compose's canonical JSON (sorted keys, no spaces), hex."""
    canonical = json.dumps(compose_of(record, allowed), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def invalid(where: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's shape, at `where` in the request."""
    return RequestValidationError([{"loc": where, "msg": message, "type": "value_error"}])


def phase_error(kind: tuple[int, str, str], why: str, details: Mapping[str, Any] | None = None) -> ApiError:
    """One of the two-phase flow's structured errors."""
    status, code, message = kind
    fields = [{"field": name, "value": value, "message": None} for name, value in (details or {}).items()]
    return ApiError(status, f"{message}: {why}", code, {"details": fields})


class Cvms:
    """One user's view of the CVMs."""

    def __init__(self, user: str = Depends(user_of(ENVELOPE)), machines: Machines = Depends(cvms_of),
                 store: Store = Depends(store_of), service: Service = Depends(service_of)):
        self.user = user
        self.machines = machines
        self.store = store
        self.service = service

    def record(self, cvm_id: str) -> dict[str, Any]:
        """The caller's CVM; 403 for another user's ("not in workspace", as Phala documents), 404 for none."""
        found = self.store.get_machine(PLATFORM, self.user, cvm_id)
        if found is not None:
            return self.machines.shown(found)
        if any(record["id"] == cvm_id for record in self.machines.list()):
            raise ApiError(403, "CVM not in workspace")
        raise ApiError(404, "CVM not found")

    def shown(self, record: Mapping[str, Any]) -> Cvm:
        """A CVM as Phala shows it."""
        in_progress = record["id"] in self.service.updating
        status = "restarting" if in_progress else {"booting": "starting", "dead": "stopped"}.get(
            record["state"], record["state"])
        onchain = record["kms"] == "onchain"
        kms_info = KmsInfo(id=f"kms-{record['kms']}", slug="base-local" if onchain else "phala-local",
                           version="v0.5.7", chain_id=CHAIN_ID if onchain else None,
                           kms_contract_address="0x" + record["app_id"] if onchain else None,
                           encrypted_env_pubkey=self.service.kms.public_key(record["app_id"]))
        return Cvm(id=record["id"], name=record["name"], app_id=record["app_id"], status=status,
                   in_progress=in_progress, kms_info=kms_info, created_at=record["created_at"])

    def opened(self, record: Mapping[str, Any], body: EnvUpdate) -> None:
        """422 unless the blob opens with the app's key into a set within the rules, and each env key is a key."""
        try:
            pairs = sealed_env.open(self.service.kms.private_key(record["app_id"]), body.encrypted_env)
        except sealed_env.SealedEnvError as exc:
            raise invalid(("body", "encrypted_env"), str(exc)) from None
        for key, value in pairs:
            problem = key_violation(RULES, key) or value_violation(RULES, key, value)
            if problem is not None:
                raise invalid(("body", "encrypted_env"), f"the encrypted env: {problem.message}")
        for number, key in enumerate(body.env_keys or []):
            problem = key_violation(RULES, key)
            if problem is not None:
                raise invalid(("body", "env_keys", number), problem.message)

    def verify(self, record: Mapping[str, Any], allowed: list[str], body: EnvUpdate, issued: Mapping[str, str]) \
            -> str | None:
        """For an on-chain KMS, the proof that `allowed` was registered: None when it holds, else the hash to issue
        (465); 466, 467 or 468 for a bad proof."""
        needed = compose_hash(record, allowed)
        if body.compose_hash is None:
            return needed
        given = plain_hash(body.compose_hash)
        at = issued.get(ISSUED + given)
        if at is None or self.service.clock.now() - float(at) > HASH_LIFETIME_S:
            raise phase_error(HASH_INVALID, "it was not issued for this CVM, or more than 7 days ago; start again "
                                            "without compose_hash")
        if given != needed:
            raise phase_error(HASH_NOT_ALLOWED, "it is not the hash of this update's app compose",
                              {"compose_hash": needed})
        registration = self.service.ledger.transaction(body.transaction_hash or "")
        if registration is None or (registration.compose_hash, registration.app_id) != (given, record["app_id"]):
            raise phase_error(TX_FAILED, "the transaction is unknown, or did not register this compose hash for "
                                         "this app")
        return None

    def update(self, cvm_id: str, body: EnvUpdate) -> UpdateAccepted:
        """Replace the CVM's set (and allowed keys), then restart it in the background."""
        record = self.record(cvm_id)
        self.machines.here(record, f"CVM {cvm_id!r}")  # before anything is stored: its node restarts it
        self.opened(record, body)
        with self.service.lock:
            if cvm_id in self.service.updating:
                raise ApiError(409, "Another operation in progress: an update of this CVM is being applied")
            if record["state"] != "running":
                raise ApiError(409, f"CVM is {record['state']}, not running")
            with self.store.edit(PLATFORM, self.user, cvm_id) as edit:
                stored = {key: variable.value for key, variable in edit.variables().items()}
                allowed = json.loads(stored.get(ALLOWED, "[]"))
                wanted = allowed if body.env_keys is None else list(body.env_keys)
                onchain = wanted != allowed and record["kms"] == "onchain"
                needed = self.verify(record, wanted, body, stored) if onchain else None
                if needed is not None:
                    edit.upsert(ISSUED + needed, str(self.service.clock.now()))
                else:
                    edit.upsert(SEALED, body.encrypted_env.lower().removeprefix("0x"))
                    edit.upsert(ALLOWED, json.dumps(wanted))
                    for key in [key for key in stored if key.startswith(ISSUED)]:
                        edit.delete(key)
            if needed is not None:
                raise phase_error(REGISTRATION_REQUIRED, "register compose_hash for app_id, then send this update "
                                  "again with compose_hash and transaction_hash",
                                  {"compose_hash": needed, "app_id": record["app_id"], "device_id": record["id"],
                                   "kms_info": self.shown(record).kms_info.model_dump()})
            correlation = str(uuid.uuid4())
            self.service.updating[cvm_id] = correlation
        threading.Thread(target=self._restart, args=(cvm_id,), daemon=True).start()
        return UpdateAccepted(status="in_progress", message="Environment update initiated", correlation_id=correlation,
                              allowed_envs_changed=wanted != allowed)

    def _restart(self, cvm_id: str) -> None:
        try:
            self.machines.restart(self.user, cvm_id)
        except MachineError as exc:
            log.warning("CVM %s did not restart after its env update: %s", cvm_id, exc.message)
        finally:
            with self.service.lock:
                self.service.updating.pop(cvm_id, None)


Caller = Depends(Cvms)


@router.get("/{cvm_id}", operation_id="get_cvm", response_model=Cvm)
def get_cvm(cvm_id: CvmId, cvms: Cvms = Caller) -> Cvm:
    """The CVM: its app, status and KMS (with the public key to seal its env set to)."""
    return cvms.shown(cvms.record(cvm_id))


@router.get("/{cvm_id}/compose_file", operation_id="get_cvm_compose_file", response_model=AppCompose)
def get_compose_file(cvm_id: CvmId, cvms: Cvms = Caller) -> AppCompose:
    """The CVM's app compose, with its `allowed_envs`."""
    record = cvms.record(cvm_id)
    return AppCompose(**compose_of(record, cvms.service.state(record)[1]))


@router.patch("/{cvm_id}/envs", operation_id="update_cvm_envs", status_code=202, response_model=UpdateAccepted,
              responses={409: {"model": Detail, "description": "Another operation in progress"},
                         **structured(*REGISTRATION_REQUIRED), **structured(*HASH_INVALID),
                         **structured(*TX_FAILED), **structured(*HASH_NOT_ALLOWED)})
def update_envs(cvm_id: CvmId, body: EnvUpdate, cvms: Cvms = Caller) -> UpdateAccepted:
    """Update encrypted environment variables (the whole set). If env_keys changes for contract-owned KMS, requires
    two-phase flow with on-chain hash registration."""
    return cvms.update(cvm_id, body)

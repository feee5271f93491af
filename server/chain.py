"""A local ledger standing in for a chain: apps register compose hashes, each registration a transaction.

Platforms whose KMS is governed on chain (an app's allowed compose hashes live in a contract) check a
client's proof against it: the transaction must exist and have registered that hash for that app.
`POST /_envvars/v1/chain/compose-hashes` registers one, with the app's owner's token (the app is a
workload of the caller with that `app_id`). Registrations are kept in `chain/ledger.jsonl` (append
only, 0600) and survive a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from envvars_server.datadir import DIR_MODE, FILE_MODE
from envvars_server.deps import current_user, workloads_of
from envvars_server.errors import ApiError
from envvars_server.workloads import PREFIX, ErrorResponse, Workloads

HASH_PATTERN = r"^(0x)?[0-9a-fA-F]{64}$"


@dataclass(frozen=True)
class Registration:
    """One transaction: `compose_hash` registered for `app_id` at `at` (server clock, seconds)."""

    transaction_hash: str
    app_id: str
    compose_hash: str
    at: float


def plain_hash(value: str) -> str:
    """A hash as compared: lowercase hex without `0x`."""
    return value.lower().removeprefix("0x")


class Ledger:
    """Every registration, by transaction hash."""

    def __init__(self, directory: Path):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        self.path = directory / "ledger.jsonl"
        self._lock = threading.Lock()
        self._entries: dict[str, Registration] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                entry = Registration(**json.loads(line))
                self._entries[entry.transaction_hash] = entry

    def register(self, app_id: str, compose_hash: str, at: float) -> Registration:
        """Record a new transaction registering `compose_hash` for `app_id`."""
        entry = Registration("0x" + secrets.token_hex(32), app_id, plain_hash(compose_hash), at)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "a") as file:
                file.write(json.dumps(asdict(entry)) + "\n")
                file.flush()
                os.fsync(file.fileno())
            self._entries[entry.transaction_hash] = entry
        return entry

    def transaction(self, transaction_hash: str) -> Registration | None:
        """The registration a transaction made, if any."""
        with self._lock:
            return self._entries.get(transaction_hash.lower())


class NewRegistration(BaseModel):
    """A compose hash to register for an app."""

    model_config = ConfigDict(extra="forbid")
    app_id: StrictStr = Field(description="The app (its `app_id`, as its platform shows it)", max_length=128)
    compose_hash: StrictStr = Field(description="The compose hash (hex, `0x` allowed)", pattern=HASH_PATTERN)


class Transaction(BaseModel):
    """The transaction that registered the hash."""

    transaction_hash: str


router = APIRouter(prefix=PREFIX + "/chain", tags=["chain"], responses={
    400: {"model": ErrorResponse, "description": "Validation error"},
    401: {"model": ErrorResponse, "description": "Unauthorized"},
    404: {"model": ErrorResponse, "description": "No app of this user has that app_id"},
})


@router.post("/compose-hashes", operation_id="register_compose_hash", status_code=201, response_model=Transaction)
def register(body: NewRegistration, request: Request, user: str = Depends(current_user),
             hosts: dict[str, Workloads] = Depends(workloads_of)) -> Transaction:
    """Register a compose hash for one of the caller's apps, as an on-chain `addComposeHash` would."""
    app_id = body.app_id.lower().removeprefix("0x")
    owned = any(record.get("app_id") == app_id for host in hosts.values() for record in host.machines.list(user))
    if not owned:
        raise ApiError(404, f"no app of this user has app_id {body.app_id[:64]!r}")
    ledger: Ledger = request.app.state.chain
    return Transaction(transaction_hash=ledger.register(app_id, body.compose_hash, request.app.state.clock.now())
                       .transaction_hash)

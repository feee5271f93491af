"""A local ledger standing in for a chain: apps register compose hashes, each registration a transaction.

Platforms whose KMS is governed on chain (an app's allowed compose hashes live in a contract) check a
client's proof against it: the transaction must exist and have registered that hash for that app.
`POST /_envvars/v1/chain/compose-hashes` registers one, with the app's owner's token (the app is a
workload of the caller with that `app_id`). Registrations are kept in the store, so they survive a
restart and every replica on one database sees them; a `chain/ledger.jsonl` left in the data dir by an
earlier release is imported at start, then removed.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from envvars_server.deps import current_user, workloads_of
from envvars_server.errors import ApiError
from envvars_server.store import Store
from envvars_server.workloads import PREFIX, ErrorResponse, Workloads

HASH_PATTERN = r"^(0x)?[0-9a-fA-F]{64}$"
log = logging.getLogger("envvars.chain")


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
    """Every registration, by transaction hash, in the store."""

    LEGACY = Path("chain", "ledger.jsonl")  # where releases before the store kept them, under the data dir

    def __init__(self, store: Store):
        self.store = store

    def import_legacy(self, data_dir: Path) -> None:
        """Move the registrations of an earlier release's `chain/ledger.jsonl` into the store.

        The file goes once all of it is stored; a start interrupted before that imports it again, keeping what is
        stored."""
        path = data_dir / self.LEGACY
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        for line in lines:
            self.store.add_registration(asdict(Registration(**json.loads(line))))
        path.unlink()
        path.parent.rmdir()
        log.warning("chain: %d registrations moved from %s into the store", len(lines), path)

    def register(self, app_id: str, compose_hash: str, at: float) -> Registration:
        """Record a new transaction registering `compose_hash` for `app_id`."""
        entry = Registration("0x" + secrets.token_hex(32), app_id, plain_hash(compose_hash), at)
        self.store.add_registration(asdict(entry))
        return entry

    def transaction(self, transaction_hash: str) -> Registration | None:
        """The registration a transaction made, if any."""
        found = self.store.get_registration(transaction_hash.lower())
        return Registration(**found) if found else None


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

"""What the server keeps, as an interface a SQLite file or a PostgreSQL database satisfies (`sqlite.py`, `postgres.py`).

Users and tokens (only digests), env-var sets, workload and snapshot records, the local chain's
registrations, and secrets by name (apps' private keys), sealed before they reach the store. A set is addressed
by (platform, owner, scope), where scope is whatever the platform groups variables by (empty for an
account-wide set, a container's or an app's id...). Each variable has its own id, the platform's
attributes (flags, notes), and creation and update times. A platform that promises encryption at
rest gives the store a `Cipher`: values are then sealed before they are written and opened after
they are read, with the variable's id bound in so a sealed value moved to another row fails to open.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


def now_iso() -> str:
    """The current UTC time in RFC 3339 form, to the second, as the APIs report it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_iso_ms() -> str:
    """The current UTC time in RFC 3339 form with milliseconds."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def hash_token(token: str) -> str:
    """The stored form of an API token: only its SHA-256 is ever written."""
    return hashlib.sha256(token.encode()).hexdigest()


class StartRefused(RuntimeError):
    """The server cannot start on this store as configured; the message says why and what to do."""


class StoreTooNew(StartRefused):
    """The database was written by a newer release than this one."""


def pending_migrations(found: int, migrations: Sequence[str], database: str) -> list[str]:
    """The statements that bring a database at schema version `found` to `len(migrations)`, in order.

    Each migration upgrades from the version before it; a database beyond them is refused untouched.
    """
    if found > len(migrations):
        raise StoreTooNew(f"{database} has schema version {found}, newer than this release's "
                          f"{len(migrations)}: run the release that wrote it, or a newer one")
    # none of our scripts has a `;` inside a statement
    return [statement.strip() for step in migrations[found:] for statement in step.split(";") if statement.strip()]


@dataclass(frozen=True)
class Variable:
    """One stored variable."""

    id: str
    key: str
    value: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


class Cipher(Protocol):
    """At-rest encryption of values: `seal` before a write, `open` after a read; `bound` is the variable's id."""

    def seal(self, value: str, bound: str) -> str:
        """The stored form of `value`."""
        ...

    def open(self, sealed: str, bound: str) -> str:
        """The value back; raises when `sealed` was not made for `bound` or was altered."""
        ...


class SetEdit(Protocol):
    """A read-modify-write of one set, under that set's lock; applied all at once when the block ends."""

    def variables(self) -> dict[str, Variable]:
        """The set as it is now (with this edit's changes so far), by key in creation order."""
        ...

    def upsert(self, key: str, value: str, attributes: Mapping[str, Any] | None = None) -> Variable:
        """Create the variable, or change its value (and the attributes given); its id stays."""
        ...

    def delete(self, key: str) -> bool:
        """Remove a variable; False when there was none."""
        ...

    def rename(self, key: str, new_key: str) -> Variable:
        """Give the variable `key` the name `new_key` (which must be free): its id, value, attributes and
        creation time (and its place in creation order) stay; its update time moves."""
        ...


class Store(Protocol):
    """The server's storage; every method is safe to call from any thread."""

    def create_token(self, user_name: str) -> str:
        """Create the user if new and a fresh API token for it; the token is returned once."""
        ...

    def user_for_token(self, token: str) -> str | None:
        """The user id a token belongs to, or None for an unknown token."""
        ...

    def cached_user(self, token: str) -> str | None:
        """The user id of a token already seen, without reading the database; None when not known yet."""
        ...

    def use_cipher(self, platform: str, cipher: Cipher) -> None:
        """Seal the values of `platform`'s sets with `cipher` from now on."""
        ...

    def get_vars(self, platform: str, owner: str, scope: str = "") -> dict[str, str]:
        """The whole set, key to value."""
        ...

    def variables(self, platform: str, owner: str, scope: str = "") -> dict[str, Variable]:
        """The whole set, by key in creation order, with ids, attributes and times."""
        ...

    def put_vars(self, platform: str, owner: str, variables: Mapping[str, str], replace: bool,
                 scope: str = "") -> dict[str, str]:
        """Upsert `variables` (or, with `replace`, make them the whole set); the set after. All or nothing."""
        ...

    def delete_var(self, platform: str, owner: str, key: str, scope: str = "") -> bool:
        """Delete one variable; False when it did not exist."""
        ...

    def edit(self, platform: str, owner: str, scope: str = "") -> AbstractContextManager[SetEdit]:
        """A read-modify-write of one set under its lock; nothing is stored if the block raises."""
        ...

    def beat(self, node_id: str, url: str) -> None:
        """Record that the cluster node `node_id`, reachable at `url`, is alive now (by the database's clock)."""
        ...

    def nodes(self) -> list[tuple[str, str, float]]:
        """Every node that ever beat: its id, its URL, and the seconds since its last beat."""
        ...

    def save_machine(self, platform: str, record: Mapping[str, Any]) -> None:
        """Insert or overwrite a workload record (at least id, owner_id, state, created_at)."""
        ...

    def get_machine(self, platform: str, owner: str, machine_id: str) -> dict[str, Any] | None:
        """One live workload record of `owner`, or None (another user's is None too)."""
        ...

    def list_machines(self, platform: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Live workload records of a platform, of one owner or of everyone, oldest first."""
        ...

    def save_commit(self, record: Mapping[str, Any]) -> None:
        """Store a snapshot record (commit_id, owner_id, created_at, ...)."""
        ...

    def get_commit(self, owner: str, commit_id: str) -> dict[str, Any] | None:
        """One snapshot record of `owner`, or None."""
        ...

    def add_registration(self, record: Mapping[str, Any]) -> None:
        """Store a chain registration (transaction_hash, app_id, compose_hash, at); one already stored stays."""
        ...

    def get_registration(self, transaction_hash: str) -> dict[str, Any] | None:
        """The registration a transaction made, or None."""
        ...

    def keep_sealed(self, name: str, sealed: str) -> str:
        """Keep the secret `sealed` (sealed by its owner) as `name` unless one is kept by that name; the one kept."""
        ...

    def get_sealed(self, name: str) -> str | None:
        """The sealed secret kept as `name`, or None."""
        ...

    def close(self) -> None:
        """Release the connections; the store is not used after."""
        ...

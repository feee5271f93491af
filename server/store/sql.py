"""What the SQLite and PostgreSQL stores share: every query and the whole of a set's edit.

The queries are written once, with `?` placeholders, in the SQL both databases speak. A store
supplies how to read (one query, one consistent snapshot), how to write (one transaction, under a
set's lock when it names a set), which column keeps rows in insertion order, and its migrations.
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, Protocol

from envvars.rules import SetLimits, check_set_size
from envvars_server.store.base import Cipher, Variable, hash_token, now_iso, now_iso_ms

Where = tuple[str, str, str]  # (platform, owner, scope)


class Rows(Protocol):
    """What a statement returns: a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...


Execute = Callable[[str, Sequence[Any]], Rows]

# The last migrations of both stores, in the SQL both speak, after each store's own.
SHARED_MIGRATIONS = (
    # What every replica on one database must share: the local chain's registrations (were chain/ledger.jsonl)
    # and secrets sealed under the server's key by name: apps' private keys (were kms/<app id>.key), both imported
    # once at start, and the check that every server on the store has that key.
    """
    CREATE TABLE chain_registrations (
        transaction_hash TEXT PRIMARY KEY,
        app_id TEXT NOT NULL,
        compose_hash TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sealed (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    # The nodes of a cluster (`serve --node-id`) and when each last beat (seconds since the epoch, by the database's
    # clock).
    """
    CREATE TABLE nodes (
        node_id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL
    )
    """,
)

_SET_COLUMNS = "key, value, id, attributes, created_at, updated_at"
_REGISTRATION = ("transaction_hash", "app_id", "compose_hash", "at")


class SqlStore(ABC):
    """The `base.Store` methods over a SQL database; `set_limits` bounds every env-var set."""

    ORDER: ClassVar[str]  # the column in which rows of env_vars and machines keep their insertion order
    NOW: ClassVar[str]  # the database's clock, in seconds since the epoch: nodes' beats are timed by it alone

    def __init__(self, set_limits: SetLimits | None = None):
        self.set_limits = set_limits or SetLimits()
        self._token_users: dict[str, str] = {}  # digest -> user id; tokens are never revoked
        self._ciphers: dict[str, Cipher] = {}

    @abstractmethod
    def _read(self, sql: str, args: Sequence[Any]) -> Sequence[Any]:
        """The rows of one query."""

    @abstractmethod
    def _write(self, where: Where | None = None) -> AbstractContextManager[Execute]:
        """One write transaction, under the lock of the set `where` when given; rolled back if the block raises."""

    # -- users and tokens -------------------------------------------------------------------

    def create_token(self, user_name: str) -> str:
        """Create the user if new and a fresh API token for it; the token is returned once."""
        token = "evt_" + secrets.token_urlsafe(32)
        with self._write() as execute:
            execute("INSERT INTO users VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (str(uuid.uuid4()), user_name, now_iso()))
            [(user_id,)] = execute("SELECT user_id FROM users WHERE name = ?", (user_name,)).fetchall()
            execute("INSERT INTO tokens VALUES (?, ?, ?)", (hash_token(token), user_id, now_iso()))
        return token

    def cached_user(self, token: str) -> str | None:
        """The user id of a token already seen, without reading the database; None when not known yet."""
        return self._token_users.get(hash_token(token))

    def user_for_token(self, token: str) -> str | None:
        """The user id a token belongs to, or None for an unknown token."""
        digest = hash_token(token)
        user = self._token_users.get(digest)
        if user is None:
            found = self._read("SELECT token_hash, user_id FROM tokens WHERE token_hash = ?", (digest,))
            if not (found and hmac.compare_digest(found[0][0], digest)):
                return None
            user = self._token_users[digest] = str(found[0][1])
        return user

    # -- env-var sets -----------------------------------------------------------------------

    def use_cipher(self, platform: str, cipher: Cipher) -> None:
        """Seal the values of `platform`'s sets with `cipher` from now on."""
        self._ciphers[platform] = cipher

    def get_vars(self, platform: str, owner: str, scope: str = "") -> dict[str, str]:
        """The whole set stored for (platform, owner, scope), by key."""
        if platform in self._ciphers:
            values = {key: variable.value for key, variable in self.variables(platform, owner, scope).items()}
        else:
            values = dict(self._read("SELECT key, value FROM env_vars WHERE platform = ? AND owner = ? AND scope = ?",
                                     (platform, owner, scope)))
        return dict(sorted(values.items()))

    def variables(self, platform: str, owner: str, scope: str = "") -> dict[str, Variable]:
        """The whole set, by key in creation order, with ids, attributes and times."""
        where = (platform, owner, scope)
        return self._variables_of(self._read(self._set_query(), where), self._ciphers.get(platform))

    @contextmanager
    def edit(self, platform: str, owner: str, scope: str = "") -> Iterator[SqlEdit]:
        """A read-modify-write of one set under its lock (see `base.SetEdit`).

        Raises `envvars.rules.RuleViolation`, storing nothing, when the set after would break `set_limits`: the
        check runs on the set as written, inside the transaction, so concurrent writes cannot together pass it.
        """
        where = (platform, owner, scope)
        with self._write(where) as execute:
            edit = SqlEdit(self, execute, where, self._ciphers.get(platform))
            yield edit
            check_set_size(self.set_limits, edit.values())

    def put_vars(
        self, platform: str, owner: str, variables: Mapping[str, str], replace: bool, scope: str = ""
    ) -> dict[str, str]:
        """Upsert `variables` (or, with `replace`, make them the whole set); return the set after."""
        with self.edit(platform, owner, scope) as edit:
            if replace:
                for key in edit.variables().keys() - variables.keys():
                    edit.delete(key)
            for key, value in variables.items():
                edit.upsert(key, value)
            resulting = dict(sorted(edit.values().items()))
        return resulting

    def delete_var(self, platform: str, owner: str, key: str, scope: str = "") -> bool:
        """Delete one variable; False when it did not exist."""
        where = (platform, owner, scope)
        with self._write(where) as execute:
            return execute("DELETE FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? AND key = ?",
                           (*where, key)).rowcount > 0

    def _set_query(self) -> str:
        return (f"SELECT {_SET_COLUMNS} FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? "
                f"ORDER BY {self.ORDER}")  # an upsert or rename keeps the row, so its place

    @staticmethod
    def _variables_of(rows: Sequence[Any], cipher: Cipher | None) -> dict[str, Variable]:
        return {key: Variable(id=var_id, key=key, value=cipher.open(value, var_id) if cipher else value,
                              attributes=json.loads(attributes), created_at=created, updated_at=updated)
                for key, value, var_id, attributes, created, updated in rows}

    # -- cluster nodes ----------------------------------------------------------------------

    def beat(self, node_id: str, url: str) -> None:
        """Record that `node_id`, reachable at `url`, is alive now."""
        with self._write() as execute:
            execute(f"INSERT INTO nodes (node_id, url, seen_at) VALUES (?, ?, {self.NOW}) ON CONFLICT (node_id) "
                    "DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at", (node_id, url))

    def nodes(self) -> list[tuple[str, str, float]]:
        """Every node that ever beat: its id, its URL, and the seconds since its last beat."""
        return [(str(node), str(url), float(age))
                for node, url, age in self._read(f"SELECT node_id, url, {self.NOW} - seen_at FROM nodes", ())]

    # -- workload and commit records --------------------------------------------------------

    def save_machine(self, platform: str, record: Mapping[str, Any]) -> None:
        """Insert or overwrite a workload record (a JSON object with at least id, owner_id, state, created_at)."""
        with self._write() as execute:
            execute(
                "INSERT INTO machines (platform, id, owner, state, created_at, deleted_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (platform, id) DO UPDATE SET "
                "state = excluded.state, deleted_at = excluded.deleted_at, record = excluded.record",
                (platform, record["id"], record["owner_id"], record["state"], record["created_at"],
                 record.get("deleted_at"), json.dumps(dict(record))),
            )

    def get_machine(self, platform: str, owner: str, machine_id: str) -> dict[str, Any] | None:
        """One live workload record of `owner`, or None (another user's is None too)."""
        rows = self._read("SELECT record FROM machines WHERE platform = ? AND id = ? AND owner = ? "
                          "AND deleted_at IS NULL", (platform, machine_id, owner))
        return json.loads(rows[0][0]) if rows else None

    def list_machines(self, platform: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Live workload records of a platform, of one owner or of everyone, oldest first."""
        query = "SELECT record FROM machines WHERE platform = ? AND deleted_at IS NULL"
        args: tuple[str, ...] = (platform,)
        if owner is not None:
            query += " AND owner = ?"
            args = (platform, owner)
        return [json.loads(row[0]) for row in self._read(query + f" ORDER BY created_at, {self.ORDER}", args)]

    def save_commit(self, record: Mapping[str, Any]) -> None:
        """Store a commit record (commit_id, owner_id, created_at, ...)."""
        with self._write() as execute:
            execute("INSERT INTO commits VALUES (?, ?, ?, ?)",
                    (record["commit_id"], record["owner_id"], record["created_at"], json.dumps(dict(record))))

    def get_commit(self, owner: str, commit_id: str) -> dict[str, Any] | None:
        """One commit record of `owner`, or None."""
        rows = self._read("SELECT record FROM commits WHERE commit_id = ? AND owner = ?", (commit_id, owner))
        return json.loads(rows[0][0]) if rows else None


    # -- the chain's registrations and sealed secrets -----------------------------------------

    def add_registration(self, record: Mapping[str, Any]) -> None:
        """Store a chain registration (transaction_hash, app_id, compose_hash, at); one already stored stays."""
        with self._write() as execute:
            execute(f"INSERT INTO chain_registrations ({', '.join(_REGISTRATION)}) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (transaction_hash) DO NOTHING", [record[name] for name in _REGISTRATION])

    def get_registration(self, transaction_hash: str) -> dict[str, Any] | None:
        """The registration a transaction made, or None."""
        rows = self._read(f"SELECT {', '.join(_REGISTRATION)} FROM chain_registrations WHERE transaction_hash = ?",
                          (transaction_hash,))
        return dict(zip(_REGISTRATION, rows[0], strict=True)) if rows else None

    def keep_sealed(self, name: str, sealed: str) -> str:
        """Keep the secret `sealed` (sealed by its owner) as `name` unless one is kept by that name; the one kept."""
        with self._write() as execute:
            execute("INSERT INTO sealed VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING", (name, sealed, now_iso()))
            [(kept,)] = execute("SELECT value FROM sealed WHERE name = ?", (name,)).fetchall()
        return str(kept)

    def get_sealed(self, name: str) -> str | None:
        """The sealed secret kept as `name`, or None."""
        rows = self._read("SELECT value FROM sealed WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None


class SqlEdit:
    """One set's read-modify-write inside a write transaction under the set's lock (see `base.SetEdit`).

    The set is read only when an operation needs it (then kept up to date); until then the rows written
    so far in this transaction are the truth.
    """

    def __init__(self, store: SqlStore, execute: Execute, where: Where, cipher: Cipher | None):
        self.store = store
        self.execute = execute
        self.where = where
        self.cipher = cipher
        self._current: dict[str, Variable] | None = None
        self._values: dict[str, str] | None = None

    def current(self) -> dict[str, Variable]:
        """The set as edited so far (read once, then kept up to date); not a copy."""
        if self._current is None:
            self._current = self.store._variables_of(
                self.execute(self.store._set_query(), self.where).fetchall(), self.cipher)
        return self._current

    def variables(self) -> dict[str, Variable]:
        return dict(self.current())

    def values(self) -> dict[str, str]:
        """The set's values as edited so far, by key; not a copy."""
        if self._values is None:
            if self._current is not None or self.cipher is not None:
                self._values = {key: variable.value for key, variable in self.current().items()}
            else:
                self._values = dict(self.execute(
                    "SELECT key, value FROM env_vars WHERE platform = ? AND owner = ? AND scope = ?",
                    self.where).fetchall())
        return self._values

    def upsert(self, key: str, value: str, attributes: Mapping[str, Any] | None = None) -> Variable:
        self._values = None
        now = now_iso_ms()
        if self._current is None and self.cipher is None and not attributes:
            # Nothing of the old row is needed: the statement keeps its id, attributes and creation time.
            [(var_id, kept, created)] = self.execute(
                f"INSERT INTO env_vars (platform, owner, scope, {_SET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (platform, owner, scope, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at RETURNING id, attributes, created_at",
                (*self.where, key, value, str(uuid.uuid4()), "{}", now, now),
            ).fetchall()
            return Variable(id=var_id, key=key, value=value, attributes=json.loads(kept), created_at=created,
                            updated_at=now)
        old = self.current().get(key)
        variable = Variable(
            id=old.id if old else str(uuid.uuid4()), key=key, value=value,
            attributes={**(old.attributes if old else {}), **(attributes or {})},
            created_at=old.created_at if old else now, updated_at=now,
        )
        stored = self.cipher.seal(value, variable.id) if self.cipher else value
        self.execute(
            f"INSERT INTO env_vars (platform, owner, scope, {_SET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (platform, owner, scope, key) DO UPDATE SET value = excluded.value, "
            "attributes = excluded.attributes, updated_at = excluded.updated_at",
            (*self.where, key, stored, variable.id, json.dumps(dict(variable.attributes)), variable.created_at, now),
        )
        self.current()[key] = variable
        return variable

    def delete(self, key: str) -> bool:
        self._values = None
        if self.current().pop(key, None) is None:
            return False
        self.execute("DELETE FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? AND key = ?",
                     (*self.where, key))
        return True

    def rename(self, key: str, new_key: str) -> Variable:
        self._values = None
        current = self.current()
        if new_key in current:
            raise KeyError(new_key)
        old = current[key]
        variable = Variable(id=old.id, key=new_key, value=old.value, attributes=old.attributes,
                            created_at=old.created_at, updated_at=now_iso_ms())
        self.execute("UPDATE env_vars SET key = ?, updated_at = ? WHERE platform = ? AND owner = ? AND scope = ? "
                     "AND key = ?", (new_key, variable.updated_at, *self.where, key))
        # Keep the edit's view in creation order: the renamed variable stays where it was.
        self._current = {new_key if name == key else name: variable if name == key else kept
                         for name, kept in current.items()}
        return variable

"""The store on one SQLite file under the data dir (see `base.py` for what it keeps).

Every write is one transaction in WAL mode with `synchronous=FULL`, so a write that was
acknowledged survives a crash, and a reader sees either the old or the new set, never a mix. A
set's read-modify-write runs under the database's write lock, which covers every set. The schema
is versioned (`PRAGMA user_version`); a database written by an older release is upgraded in place
when the server starts, and one written by a newer release is refused.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from envvars.rules import SetLimits, check_set_size
from envvars_server.datadir import create_private, secure_data_dir
from envvars_server.store.base import Cipher, Variable, hash_token, now_iso, now_iso_ms

_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS env_vars (
    platform TEXT NOT NULL,
    owner TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (platform, owner, scope, key)
);
CREATE TABLE IF NOT EXISTS vms (
    vm_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commits (
    commit_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL
);
"""

# Each step upgrades a database from the version before it, in place, in one transaction; the
# base schema above is version 0 (release 0.1.0), so a new database takes the same path as an old one.
_MIGRATIONS = (
    # 1: workload records of every platform, by (platform, id); Vers' VMs keep their records.
    """
    CREATE TABLE machines (
        platform TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT,
        record TEXT NOT NULL,
        PRIMARY KEY (platform, id)
    );
    INSERT INTO machines SELECT 'vers', vm_id, owner, state, created_at, deleted_at,
        json_set(record, '$.id', vm_id) FROM vms ORDER BY rowid;
    DROP TABLE vms;
    """,
    # 2: each variable gets an id (uuid v4), attributes and creation and update times.
    """
    CREATE TABLE env_vars_v2 (
        platform TEXT NOT NULL,
        owner TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (platform, owner, scope, key)
    );
    INSERT INTO env_vars_v2 SELECT platform, owner, scope, key, value,
        lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2)
            || '-' || substr('89ab', 1 + abs(random()) % 4, 1) || substr(lower(hex(randomblob(2))), 2) || '-'
            || lower(hex(randomblob(6))),
        '{}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM env_vars;
    DROP TABLE env_vars;
    ALTER TABLE env_vars_v2 RENAME TO env_vars;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

DB_FILE = "envvars.db"


class StoreTooNew(RuntimeError):
    """The database was written by a newer release than this one."""


def _statements(script: str) -> list[str]:
    """The SQL statements of a script (none of ours has a `;` inside a statement)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


class SqliteStore:
    """One SQLite file under the data dir; safe to share between the server's threads.

    `set_limits` bounds every env-var set: a write that would leave a set beyond them stores nothing.
    """

    def __init__(self, data_dir: Path, set_limits: SetLimits | None = None):
        secure_data_dir(data_dir)
        self.path = data_dir / DB_FILE
        create_private(self.path)  # SQLite gives its -wal and -shm files the same mode
        self.set_limits = set_limits or SetLimits()
        self._local = threading.local()
        # One writer at a time inside this process, so SQLite's own lock is never contended and
        # "database is locked" cannot reach a client.
        self._write_lock = threading.Lock()
        self._token_users: dict[str, str] = {}  # digest -> user id; tokens are never revoked
        self._ciphers: dict[str, Cipher] = {}
        self._migrate()

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION in place; refuse one written by a newer release."""
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreTooNew(f"{self.path} has schema version {version}, newer than this release's "
                                  f"{SCHEMA_VERSION}: run the release that wrote it, or a newer one")
            if version == 0:
                for statement in _statements(_BASE_SCHEMA):
                    db.execute(statement)
            for step in _MIGRATIONS[version:]:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- users and tokens -------------------------------------------------------------------

    def create_token(self, user_name: str) -> str:
        """Create the user if new and a fresh API token for it; the token is returned once."""
        token = "evt_" + secrets.token_urlsafe(32)
        with self._write() as db:
            row = db.execute("SELECT user_id FROM users WHERE name = ?", (user_name,)).fetchone()
            user_id = row[0] if row else str(uuid.uuid4())
            if not row:
                db.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, user_name, now_iso()))
            db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (hash_token(token), user_id, now_iso()))
        return token

    def user_for_token(self, token: str) -> str | None:
        """The user id a token belongs to, or None for an unknown token."""
        digest = hash_token(token)
        user = self._token_users.get(digest)
        if user is None:
            found = self._db().execute(
                "SELECT token_hash, user_id FROM tokens WHERE token_hash = ?", (digest,)
            ).fetchone()
            if not (found and hmac.compare_digest(found[0], digest)):
                return None
            user = self._token_users[digest] = str(found[1])
        return user

    # -- env-var sets -----------------------------------------------------------------------

    def use_cipher(self, platform: str, cipher: Cipher) -> None:
        """Seal the values of `platform`'s sets with `cipher` from now on."""
        self._ciphers[platform] = cipher

    def get_vars(self, platform: str, owner: str, scope: str = "") -> dict[str, str]:
        """The whole set stored for (platform, owner, scope)."""
        if platform in self._ciphers:
            return {key: variable.value for key, variable in self.variables(platform, owner, scope).items()}
        rows = self._db().execute(
            "SELECT key, value FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? ORDER BY key",
            (platform, owner, scope),
        )
        return dict(rows.fetchall())

    def variables(self, platform: str, owner: str, scope: str = "") -> dict[str, Variable]:
        """The whole set, by key in creation order, with ids, attributes and times."""
        return _read_set(self._db(), (platform, owner, scope), self._ciphers.get(platform))

    @contextmanager
    def edit(self, platform: str, owner: str, scope: str = "") -> Iterator[_Edit]:
        """A read-modify-write of one set under the write lock; nothing is stored if the block raises.

        Raises `RuleViolation`, storing nothing, when the set after would break `set_limits`: the
        check runs on the set as written, inside the transaction, so concurrent writes cannot
        together pass it.
        """
        with self._write() as db:
            edit = _Edit(db, (platform, owner, scope), self._ciphers.get(platform))
            yield edit
            check_set_size(self.set_limits, {key: v.value for key, v in edit._set().items()})

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
            resulting = {key: variable.value for key, variable in sorted(edit._set().items())}
        return resulting

    def delete_var(self, platform: str, owner: str, key: str, scope: str = "") -> bool:
        """Delete one variable; False when it did not exist."""
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? AND key = ?",
                (platform, owner, scope, key),
            )
            return cursor.rowcount > 0

    # -- workload and commit records --------------------------------------------------------

    def save_machine(self, platform: str, record: Mapping[str, Any]) -> None:
        """Insert or overwrite a workload record (a JSON object with at least id, owner_id, state, created_at)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO machines VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (platform, id) DO UPDATE SET "
                "state = excluded.state, deleted_at = excluded.deleted_at, record = excluded.record",
                (
                    platform,
                    record["id"],
                    record["owner_id"],
                    record["state"],
                    record["created_at"],
                    record.get("deleted_at"),
                    json.dumps(dict(record)),
                ),
            )

    def get_machine(self, platform: str, owner: str, machine_id: str) -> dict[str, Any] | None:
        """One live workload record of `owner`, or None (another user's is None too)."""
        row = self._db().execute(
            "SELECT record FROM machines WHERE platform = ? AND id = ? AND owner = ? AND deleted_at IS NULL",
            (platform, machine_id, owner),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def list_machines(self, platform: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Live workload records of a platform, of one owner or of everyone, oldest first."""
        query = "SELECT record FROM machines WHERE platform = ? AND deleted_at IS NULL"
        args: tuple[str, ...] = (platform,)
        if owner is not None:
            query += " AND owner = ?"
            args = (platform, owner)
        rows = self._db().execute(query + " ORDER BY created_at, rowid", args).fetchall()
        return [json.loads(row[0]) for row in rows]

    def save_commit(self, record: Mapping[str, Any]) -> None:
        """Store a commit record (commit_id, owner_id, created_at, ...)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO commits VALUES (?, ?, ?, ?)",
                (record["commit_id"], record["owner_id"], record["created_at"], json.dumps(dict(record))),
            )

    def get_commit(self, owner: str, commit_id: str) -> dict[str, Any] | None:
        """One commit record of `owner`, or None."""
        row = self._db().execute(
            "SELECT record FROM commits WHERE commit_id = ? AND owner = ?", (commit_id, owner)
        ).fetchone()
        return json.loads(row[0]) if row else None


Where = tuple[str, str, str]  # (platform, owner, scope)


def _read_set(db: sqlite3.Connection, where: Where, cipher: Cipher | None) -> dict[str, Variable]:
    rows = db.execute(
        "SELECT key, value, id, attributes, created_at, updated_at FROM env_vars "
        "WHERE platform = ? AND owner = ? AND scope = ? ORDER BY rowid", where,  # an upsert or rename keeps the row
    ).fetchall()
    return {key: Variable(id=var_id, key=key, value=cipher.open(value, var_id) if cipher else value,
                          attributes=json.loads(attributes), created_at=created, updated_at=updated)
            for key, value, var_id, attributes, created, updated in rows}


class _Edit:
    """One set's read-modify-write inside a write transaction (see `base.SetEdit`)."""

    def __init__(self, db: sqlite3.Connection, where: Where, cipher: Cipher | None):
        self.db = db
        self.where = where
        self.cipher = cipher
        self._current: dict[str, Variable] | None = None

    def _set(self) -> dict[str, Variable]:
        """The set as edited so far (read once, then kept up to date)."""
        if self._current is None:
            self._current = _read_set(self.db, self.where, self.cipher)
        return self._current

    def variables(self) -> dict[str, Variable]:
        return dict(self._set())

    def upsert(self, key: str, value: str, attributes: Mapping[str, Any] | None = None) -> Variable:
        old = self._set().get(key)
        now = now_iso_ms()
        variable = Variable(
            id=old.id if old else str(uuid.uuid4()), key=key, value=value,
            attributes={**(old.attributes if old else {}), **(attributes or {})},
            created_at=old.created_at if old else now, updated_at=now,
        )
        stored = self.cipher.seal(value, variable.id) if self.cipher else value
        self.db.execute(
            "INSERT INTO env_vars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (platform, owner, scope, key) "
            "DO UPDATE SET value = excluded.value, attributes = excluded.attributes, updated_at = excluded.updated_at",
            (*self.where, key, stored, variable.id, json.dumps(dict(variable.attributes)), variable.created_at, now),
        )
        self._set()[key] = variable
        return variable

    def delete(self, key: str) -> bool:
        if self._set().pop(key, None) is None:
            return False
        self.db.execute("DELETE FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? AND key = ?",
                        (*self.where, key))
        return True

    def rename(self, key: str, new_key: str) -> Variable:
        current = self._set()
        if new_key in current:
            raise KeyError(new_key)
        old = current[key]
        variable = Variable(id=old.id, key=new_key, value=old.value, attributes=old.attributes,
                            created_at=old.created_at, updated_at=now_iso_ms())
        self.db.execute("UPDATE env_vars SET key = ?, updated_at = ? WHERE platform = ? AND owner = ? AND scope = ? "
                        "AND key = ?", (new_key, variable.updated_at, *self.where, key))
        # Keep the edit's view in creation order: the renamed variable stays where it was.
        self._current = {new_key if name == key else name: variable if name == key else kept
                         for name, kept in current.items()}
        return variable

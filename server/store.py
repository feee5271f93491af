"""SQLite storage for the reference server: users, tokens, env-var sets and workload records.

Nothing here is platform-specific: an env-var set is addressed by (platform, owner, scope), where
scope is whatever the platform groups variables by (empty for Vers' account-wide set, a container's
id for Hoody), and a workload record by (platform, id).
Every write is one transaction in WAL mode with `synchronous=FULL`, so a write that was
acknowledged survives a crash, and a reader sees either the old or the new set, never a mix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from envvars.rules import SetLimits, check_set_size
from envvars_server.datadir import create_private, secure_data_dir

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
)
SCHEMA_VERSION = len(_MIGRATIONS)

DB_FILE = "envvars.db"


class StoreTooNew(RuntimeError):
    """The database was written by a newer release than this one."""


def now_iso() -> str:
    """The current UTC time in RFC 3339 form, as the APIs report it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _statements(script: str) -> list[str]:
    """The SQL statements of a script (none of ours has a `;` inside a statement)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def hash_token(token: str) -> str:
    """The stored form of an API token: only its SHA-256 is ever written."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
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

    def get_vars(self, platform: str, owner: str, scope: str = "") -> dict[str, str]:
        """The whole set stored for (platform, owner, scope)."""
        rows = self._db().execute(
            "SELECT key, value FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? ORDER BY key",
            (platform, owner, scope),
        )
        return dict(rows.fetchall())

    def put_vars(
        self, platform: str, owner: str, variables: Mapping[str, str], replace: bool, scope: str = ""
    ) -> dict[str, str]:
        """Upsert `variables` (or, with `replace`, make them the whole set); return the set after.

        Raises `RuleViolation`, storing nothing, when the set after would break `set_limits`: the
        check runs on the set as written, inside the write's transaction and lock, so concurrent
        writes cannot together pass it.
        """
        where = (platform, owner, scope)
        with self._write() as db:
            if replace:
                db.execute("DELETE FROM env_vars WHERE platform = ? AND owner = ? AND scope = ?", where)
            db.executemany(
                "INSERT INTO env_vars VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (platform, owner, scope, key) DO UPDATE SET value = excluded.value",
                [(*where, key, value) for key, value in variables.items()],
            )
            rows = db.execute(
                "SELECT key, value FROM env_vars WHERE platform = ? AND owner = ? AND scope = ? ORDER BY key",
                where,
            )
            resulting = dict(rows.fetchall())
            check_set_size(self.set_limits, resulting)  # raising rolls the transaction back
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

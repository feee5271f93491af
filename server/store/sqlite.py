"""The store on one SQLite file under the data dir (see `base.py` for what it keeps).

Every write is committed in WAL mode with `synchronous=FULL` before it is acknowledged, so it survives
a crash, and a reader sees either the old or the new set, never a mix. Writers take turns on one
connection, which is every set's lock; writes that queue up share one commit (`group_commit.py`). The schema
is versioned (`PRAGMA user_version`); a database written by an older release is upgraded in place
when the server starts, and one written by a newer release is refused.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from envvars.rules import SetLimits
from envvars_server.datadir import create_private, secure_data_dir
from envvars_server.store.base import StoreTooNew, pending_migrations
from envvars_server.store.group_commit import GroupCommit
from envvars_server.store.sql import SHARED_MIGRATIONS, Execute, SqlStore, Where

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
    *SHARED_MIGRATIONS,  # 3 and 4
)
SCHEMA_VERSION = len(_MIGRATIONS)

DB_FILE = "envvars.db"

__all__ = ["DB_FILE", "SCHEMA_VERSION", "SqliteStore", "StoreTooNew"]


class SqliteStore(SqlStore):
    """One SQLite file under the data dir; safe to share between the server's threads.

    `set_limits` bounds every env-var set: a write that would leave a set beyond them stores nothing.
    """

    ORDER = "rowid"
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, data_dir: Path, set_limits: SetLimits | None = None):
        super().__init__(set_limits)
        secure_data_dir(data_dir)
        self.path = data_dir / DB_FILE
        create_private(self.path)  # SQLite gives its -wal and -shm files the same mode
        self._local = threading.local()
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}  # each reading thread's connection
        self._readers_lock = threading.Lock()
        # One writer at a time, on one connection, so SQLite's own lock is never contended and "database
        # is locked" cannot reach a client; it is every set's lock too. Writers that queue up share a commit.
        self._writer = self._connect()
        self._writes = GroupCommit(self._writer)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION in place; refuse one written by a newer release."""
        with self._write() as execute:
            version = int(execute("PRAGMA user_version", ()).fetchall()[0][0])
            statements = pending_migrations(version, _MIGRATIONS, str(self.path))
            if version == 0:
                statements = pending_migrations(0, (_BASE_SCHEMA,), str(self.path)) + statements
            for statement in statements:
                execute(statement, ())
            execute(f"PRAGMA user_version = {SCHEMA_VERSION}", ())

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def _db(self) -> sqlite3.Connection:
        """This thread's connection for reads; those of threads that ended are closed as new ones open."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            with self._readers_lock:
                for ended in [thread for thread in self._readers if not thread.is_alive()]:
                    self._readers.pop(ended).close()
                self._readers[threading.current_thread()] = db
        return db

    def close(self) -> None:
        """Close every connection once the write in progress is done (SQLite then checkpoints its WAL)."""
        with self._writes.closing(), self._readers_lock:
            for db in [self._writer, *self._readers.values()]:
                db.close()
            self._readers.clear()

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return self._db().execute(sql, args).fetchall()

    def _write(self, where: Where | None = None) -> AbstractContextManager[Execute]:
        return self._writes.transaction()

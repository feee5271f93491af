"""The store on a PostgreSQL server (`serve --database postgresql://...`; see `base.py` for what it keeps).

Every write is one transaction (committed durably with the server's default `synchronous_commit`),
so a reader sees either the old or the new set, never a mix. A set's read-modify-write and a
variable's deletion hold that set's lock in the database (`pg_advisory_xact_lock` on a hash of the
set's address), so they are serialized across every process on the database, and sets stay
independent of each other. The schema is versioned in the `schema_version` table; migrations run
at start under a database-wide lock, and a database written by a newer release is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from envvars.rules import SetLimits
from envvars_server.store.base import pending_migrations
from envvars_server.store.sql import SHARED_MIGRATIONS, Execute, Rows, SqlStore, Where

# Each step upgrades a database from the version before it, in place, in one transaction. Keys and
# times sort bytewise (COLLATE "C"), whatever the database's locale, as they do in SQLite.
MIGRATIONS = (
    # 1: the schema of SQLite's version 2; `seq` keeps rows in insertion order, as SQLite's rowid does.
    """
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(user_id),
        created_at TEXT NOT NULL
    );
    CREATE TABLE env_vars (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        platform TEXT NOT NULL,
        owner TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (platform, owner, scope, key)
    );
    CREATE TABLE machines (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        platform TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT COLLATE "C" NOT NULL,
        deleted_at TEXT,
        record TEXT NOT NULL,
        PRIMARY KEY (platform, id)
    );
    CREATE TABLE commits (
        commit_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        record TEXT NOT NULL
    )
    """,
    *SHARED_MIGRATIONS,  # 2 and 3
)
SCHEMA_VERSION = len(MIGRATIONS)

_MIGRATION_LOCK = 0x656E7676  # the advisory lock every starting server takes to migrate, one at a time


class PostgresStore(SqlStore):
    """A PostgreSQL database, through a pool of connections; safe to share between the server's threads.

    `set_limits` bounds every env-var set: a write that would leave a set beyond them stores nothing.
    """

    ORDER = "seq"
    NOW = "extract(epoch FROM clock_timestamp())::float8"

    def __init__(self, url: str, set_limits: SetLimits | None = None, max_connections: int = 20):
        super().__init__(set_limits)
        self.pool: ConnectionPool[Connection[tuple[Any, ...]]] = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, check=ConnectionPool.check_connection,
            name="envvars-store")
        self.pool.open(wait=True)
        try:
            self._migrate()
        except BaseException:
            self.pool.close()
            raise

    def close(self) -> None:
        """Close every connection of the pool."""
        self.pool.close()

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION in place; refuse one written by a newer release."""
        with self._transaction() as execute:
            execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            execute("CREATE TABLE IF NOT EXISTS schema_version (singleton BOOLEAN PRIMARY KEY DEFAULT TRUE "
                    "CHECK (singleton), version INTEGER NOT NULL)", ())
            rows = execute("SELECT version FROM schema_version", ()).fetchall()
            version = int(rows[0][0]) if rows else 0
            for statement in pending_migrations(version, MIGRATIONS, "the PostgreSQL database"):
                execute(statement, ())
            execute("INSERT INTO schema_version (version) VALUES (?) ON CONFLICT (singleton) "
                    "DO UPDATE SET version = excluded.version", (SCHEMA_VERSION,))

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        """One transaction on a pooled connection: committed when the block ends, rolled back if it raises."""
        with self.pool.connection() as db:

            def execute(sql: str, args: Sequence[Any]) -> Rows:
                return db.execute(sql.replace("?", "%s"), args)

            yield execute

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._transaction() as execute:
            return list(execute(sql, args).fetchall())

    @contextmanager
    def _write(self, where: Where | None = None) -> Iterator[Execute]:
        with self._transaction() as execute:
            if where is not None:
                execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (json.dumps(where),))
            yield execute

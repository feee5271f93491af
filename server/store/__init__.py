"""The server's storage: the interface (`base`), the queries every SQL store shares (`sql`), and its
implementations on a SQLite file (`sqlite`) and on a PostgreSQL server (`postgres`)."""

from pathlib import Path

from envvars.rules import SetLimits
from envvars_server.store.base import (
    Cipher,
    SetEdit,
    StartRefused,
    Store,
    StoreTooNew,
    Variable,
    hash_token,
    now_iso,
    now_iso_ms,
)
from envvars_server.store.postgres import PostgresStore
from envvars_server.store.sqlite import DB_FILE, SCHEMA_VERSION, SqliteStore

__all__ = ["DB_FILE", "SCHEMA_VERSION", "Cipher", "PostgresStore", "SetEdit", "SqliteStore", "StartRefused", "Store",
           "StoreTooNew", "Variable", "hash_token", "now_iso", "now_iso_ms", "open_store"]


def open_store(data_dir: Path, database: str | None = None, set_limits: SetLimits | None = None) -> Store:
    """A server's store: on the PostgreSQL database `database` (a `postgresql://` URL) when given, else the SQLite
    file in `data_dir`; upgraded in place to this release's schema (`StoreTooNew` when written by a newer one)."""
    if database:
        return PostgresStore(database, set_limits)
    return SqliteStore(data_dir, set_limits)

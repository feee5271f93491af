"""The server's storage: the interface (`base`), the queries every SQL store shares (`sql`), and its
implementations on a SQLite file (`sqlite`) and on a PostgreSQL server (`postgres`)."""

from envvars_server.store.base import Cipher, SetEdit, Store, StoreTooNew, Variable, hash_token, now_iso, now_iso_ms
from envvars_server.store.postgres import PostgresStore
from envvars_server.store.sqlite import DB_FILE, SCHEMA_VERSION, SqliteStore

__all__ = ["DB_FILE", "SCHEMA_VERSION", "Cipher", "PostgresStore", "SetEdit", "SqliteStore", "Store", "StoreTooNew",
           "Variable", "hash_token", "now_iso", "now_iso_ms"]

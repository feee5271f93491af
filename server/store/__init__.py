"""The server's storage: the interface (`base`) and its SQLite implementation (`sqlite`)."""

from envvars_server.store.base import Cipher, SetEdit, Store, Variable, hash_token, now_iso, now_iso_ms
from envvars_server.store.sqlite import DB_FILE, SCHEMA_VERSION, SqliteStore, StoreTooNew

__all__ = ["DB_FILE", "SCHEMA_VERSION", "Cipher", "SetEdit", "SqliteStore", "Store", "StoreTooNew", "Variable",
           "hash_token", "now_iso", "now_iso_ms"]

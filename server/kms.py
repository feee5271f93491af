"""A key management service: one X25519 key pair per app, for env sets sealed to it (`envvars.sealed_env`).

The private key is kept in the store, sealed under the server's at-rest key (`at_rest.py`) with the app id
bound in, so every replica on one database hands out the same key for an app and the database never holds
it in clear. It never leaves the server, and is never logged or answered; only the public key is shown.
Key files (`kms/<app id>.key`) left in the data dir by an earlier release are imported at start, then removed.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from envvars import sealed_env
from envvars_server.store import Cipher, Store

APP_ID = re.compile(r"[0-9a-f]{40}")
LEGACY_DIR = "kms"  # where releases before the store kept the keys, under the data dir
log = logging.getLogger("envvars.kms")


class UnknownApp(LookupError):
    """No key pair is kept for this app id."""


class Kms:
    """The app keys in a store, sealed with `cipher`; opened on first use and kept in memory."""

    def __init__(self, store: Store, cipher: Cipher):
        self.store = store
        self.cipher = cipher
        self._keys: dict[str, X25519PrivateKey] = {}
        self._lock = threading.Lock()

    def import_legacy(self, data_dir: Path) -> None:
        """Move an earlier release's key files into the store, sealed (each file goes once stored)."""
        directory = data_dir / LEGACY_DIR
        if not directory.is_dir():
            return
        files = sorted(directory.glob("*.key"))
        for path in files:
            self._keep(path.stem, X25519PrivateKey.from_private_bytes(path.read_bytes()))
            path.unlink()
        directory.rmdir()
        log.warning("kms: %d app keys moved from %s into the store, sealed", len(files), directory)

    def create(self, app_id: str) -> str:
        """A new key pair for `app_id` (unless it has one); its public key (hex)."""
        return sealed_env.public_key_hex(self._keep(app_id, X25519PrivateKey.generate()))

    def private_key(self, app_id: str) -> X25519PrivateKey:
        """The app's private key, for opening what was sealed to it."""
        with self._lock:
            key = self._keys.get(app_id)
        if key is None:
            sealed = self.store.get_sealed(self._name(app_id))
            if sealed is None:
                raise UnknownApp(f"no key pair for app {app_id}")
            key = self._opened(app_id, sealed)
        return key

    def public_key(self, app_id: str) -> str:
        """The app's public key, hex: what clients seal to."""
        return sealed_env.public_key_hex(self.private_key(app_id))

    def _keep(self, app_id: str, key: X25519PrivateKey) -> X25519PrivateKey:
        """Store `key` as the app's unless it has one (another replica's, made at the same time); the one kept."""
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        name = self._name(app_id)
        return self._opened(app_id, self.store.keep_sealed(name, self.cipher.seal(raw.hex(), name)))

    def _opened(self, app_id: str, sealed: str) -> X25519PrivateKey:
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(self.cipher.open(sealed, self._name(app_id))))
        with self._lock:
            self._keys[app_id] = key
        return key

    @staticmethod
    def _name(app_id: str) -> str:
        """The key's name in the store, bound into its sealed form too: moved to another app's row, it does not open."""
        if not APP_ID.fullmatch(app_id):
            raise ValueError("an app id is 40 lowercase hex characters")
        return f"app-key:{app_id}"

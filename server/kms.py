"""A key management service: one X25519 key pair per app, for env sets sealed to it (`envvars.sealed_env`).

The private key is 32 raw bytes in `<dir>/<app id>.key` (mode 0600, written once, exclusively), inside
the data dir: it never leaves the server, and is never logged or answered; only the public key is shown.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from envvars import sealed_env
from envvars_server.datadir import DIR_MODE, FILE_MODE

APP_ID = re.compile(r"[0-9a-f]{40}")


class Kms:
    """The app keys under one directory, loaded on first use."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        self._keys: dict[str, X25519PrivateKey] = {}
        self._lock = threading.Lock()

    def _path(self, app_id: str) -> Path:
        if not APP_ID.fullmatch(app_id):
            raise ValueError("an app id is 40 lowercase hex characters")
        return self.directory / f"{app_id}.key"

    def create(self, app_id: str) -> str:
        """A new key pair for `app_id`; its public key (hex)."""
        key = X25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        fd = os.open(self._path(app_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        with self._lock:
            self._keys[app_id] = key
        return sealed_env.public_key_hex(key)

    def private_key(self, app_id: str) -> X25519PrivateKey:
        """The app's private key, for opening what was sealed to it."""
        with self._lock:
            key = self._keys.get(app_id)
            if key is None:
                key = self._keys[app_id] = X25519PrivateKey.from_private_bytes(self._path(app_id).read_bytes())
        return key

    def public_key(self, app_id: str) -> str:
        """The app's public key, hex: what clients seal to."""
        return sealed_env.public_key_hex(self.private_key(app_id))

"""Values encrypted at rest, for any platform that promises it (and apps' private keys): AES-256-GCM under the
server's key.

The key is 32 random bytes in a file (mode 0600; `KEY_FILE` in the data dir unless `serve --at-rest-key` names
another), made on the server's first start and read at every later one; it is never logged. Replicas on one
database must share it (one file, copied to each), or none opens what another sealed.

Each value is sealed with a fresh 96-bit nonce and the variable's id as associated data, so a sealed
value copied into another variable's row (or altered) fails to open instead of answering another
variable's value. The stored form is `v1:` and the base64 of nonce and ciphertext with its tag.

What this protects: a copy of the SQLite file (and its -wal/-shm) or of the PostgreSQL database, a
backup of it, or a disk that holds it, taken without the key file, reveals no value. What it does not:
anyone who can read both the store and the key file (by default the key sits next to the SQLite file)
or the server's memory, and a variable's key, flags and times, which are stored in the clear.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envvars_server.datadir import FILE_MODE
from envvars_server.errors import DomainError
from envvars_server.store import StartRefused, Store

KEY_FILE = "at-rest.key"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1:"
KEY_CHECK = "at-rest-key-check"  # the name, value and binding of the check sealed under the store's key


class SealedValueInvalid(DomainError):
    """A stored value that does not open under this key for this variable (moved, altered, or another key's);
    each platform answers it as its internal error, naming the variable's id, never a value."""


def load_key(path: Path) -> bytes:
    """The key in the file `path`, made (0600, exclusively) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise RuntimeError(f"{path} is not a {KEY_BYTES}-byte key: restore it from a backup") from None
        return key
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    return key


class AesGcmCipher:
    """A `store.Cipher`: AES-256-GCM, the variable's id as associated data."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, value: str, bound: str) -> str:
        """The stored form of `value` for the variable `bound`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), bound.encode())
        return VERSION + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, bound: str) -> str:
        """The value of the variable `bound`; SealedValueInvalid when `sealed` was not made for it."""
        if not sealed.startswith(VERSION):
            raise SealedValueInvalid(f"the stored value of variable {bound} is not sealed")
        try:
            raw = base64.b64decode(sealed[len(VERSION):], validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound.encode()).decode()
        except (ValueError, InvalidTag):
            raise SealedValueInvalid(f"the stored value of variable {bound} does not open: it was altered or "
                                     "moved from another variable") from None


class WrongKey(StartRefused):
    """The key file is not the one the store's sealed data was written with."""


def cipher_for(key_file: Path) -> AesGcmCipher:
    """The cipher of the key in `key_file` (made on first use)."""
    return AesGcmCipher(load_key(key_file))


def checked_cipher(key_file: Path, store: Store) -> AesGcmCipher:
    """The cipher of `key_file`; WrongKey unless it opens the check the store's first server sealed with its key."""
    cipher = cipher_for(key_file)
    try:
        cipher.open(store.keep_sealed(KEY_CHECK, cipher.seal(KEY_CHECK, KEY_CHECK)), KEY_CHECK)
    except SealedValueInvalid:
        raise WrongKey(f"{key_file} is not the at-rest key this store's sealed data was written with: start every "
                       "server on this store with the same key file (--at-rest-key)") from None
    return cipher

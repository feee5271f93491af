"""Env sets sealed to a public key, as Phala's public clients (dstack's `encrypt-env-vars`) seal them.

The plaintext is UTF-8 JSON `{"env": [{"key": "K", "value": "V"}, ...]}`. The sender makes an ephemeral
X25519 key pair; the X25519 shared secret with the receiver's 32-byte public key is used directly as the
AES-256-GCM key (no KDF), with a random 12-byte nonce, no associated data, and the 16-byte tag appended.
The blob is the lowercase hex of `ephemeral public key (32) || nonce (12) || ciphertext and tag`.
Used by both sides: the provider seals, the reference server's KMS opens. Errors name what is wrong,
never a value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_BLOB_BYTES = KEY_BYTES + NONCE_BYTES + TAG_BYTES  # an empty plaintext: 60 bytes
HEX = re.compile(r"[0-9a-fA-F]*")


class SealedEnvError(ValueError):
    """A blob (or a key) that cannot be opened; the subclass says why."""


class BadHex(SealedEnvError):
    """Not hex (an optional `0x` prefix aside), or an odd number of digits; or a key of the wrong size."""


class TooShort(SealedEnvError):
    """Fewer bytes than a key, a nonce and a tag."""


class TagMismatch(SealedEnvError):
    """The tag does not verify: sealed to another key, or altered."""


class BadPayload(SealedEnvError):
    """It opens, but is not UTF-8 JSON `{"env": [{"key": str, "value": str}, ...]}`."""


def from_hex(text: str, what: str) -> bytes:
    """The bytes of hex `text` (`0x` prefix allowed, either case)."""
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if not HEX.fullmatch(digits) or len(digits) % 2:
        raise BadHex(f"{what} is not hex: {len(digits)} chars, with characters other than 0-9a-f or an odd count")
    return bytes.fromhex(digits)


def public_key_hex(private_key: X25519PrivateKey) -> str:
    """The lowercase hex of the raw 32-byte public key of `private_key`."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def encode(env: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """The plaintext of a set, in the clients' compact JSON."""
    pairs = env.items() if isinstance(env, Mapping) else env
    document = {"env": [{"key": key, "value": value} for key, value in pairs]}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def seal(pubkey_hex: str, env: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The hex blob of `env` sealed to the X25519 public key `pubkey_hex` (hex, `0x` allowed)."""
    raw = from_hex(pubkey_hex, "the public key")
    if len(raw) != KEY_BYTES:
        raise BadHex(f"the public key is {len(raw)} bytes, not {KEY_BYTES}")
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(raw))
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(shared).encrypt(nonce, encode(env), None)
    return (bytes.fromhex(public_key_hex(ephemeral)) + nonce + sealed).hex()


def open(private_key: X25519PrivateKey, blob_hex: str) -> list[tuple[str, str]]:  # noqa: A001 (the module's verb)
    """The (key, value) pairs sealed in `blob_hex` to `private_key`, in the blob's order."""
    blob = from_hex(blob_hex, "the encrypted env")
    if len(blob) < MIN_BLOB_BYTES:
        raise TooShort(f"the encrypted env is {len(blob)} bytes, fewer than the {MIN_BLOB_BYTES} of a public key "
                       f"({KEY_BYTES}), a nonce ({NONCE_BYTES}) and a tag ({TAG_BYTES})")
    peer = X25519PublicKey.from_public_bytes(blob[:KEY_BYTES])
    try:
        shared = private_key.exchange(peer)
        plain = AESGCM(shared).decrypt(blob[KEY_BYTES:KEY_BYTES + NONCE_BYTES], blob[KEY_BYTES + NONCE_BYTES:], None)
    except (InvalidTag, ValueError):  # ValueError: a low-order peer key, whose shared secret is all zeros
        raise TagMismatch("the encrypted env does not open with this app's key: it was sealed to another key "
                          "or altered") from None
    return decode(plain)


def decode(plain: bytes) -> list[tuple[str, str]]:
    """The pairs of a plaintext (compact or spaced JSON); BadPayload for any other shape."""
    try:
        document = json.loads(plain.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadPayload("the encrypted env opens, but is not UTF-8 JSON") from None
    entries = document.get("env") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise BadPayload('the encrypted env opens, but is not {"env": [...]}')
    pairs = []
    for number, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("value"), str)):
            raise BadPayload(f'the encrypted env opens, but its entry {number} is not {{"key": string, '
                             '"value": string}')
        pairs.append((entry["key"], entry["value"]))
    return pairs

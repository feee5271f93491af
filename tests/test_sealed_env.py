"""The sealed env format (`envvars/sealed_env.py`): blobs round-trip, interoperate with the spec written out here
with `cryptography` directly, and every kind of bad blob fails with its own error."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envvars import sealed_env

KEY = X25519PrivateKey.generate()
PUBLIC = sealed_env.public_key_hex(KEY)


def spec_seal(public_hex: str, plaintext: bytes) -> str:
    """A blob made from the spec alone: ephemeral X25519, the shared secret as the AES-256-GCM key, 12-byte nonce."""
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(public_hex.removeprefix("0x"))))
    nonce = os.urandom(12)
    ephemeral_raw = bytes.fromhex(sealed_env.public_key_hex(ephemeral))
    return (ephemeral_raw + nonce + AESGCM(shared).encrypt(nonce, plaintext, None)).hex()


def spec_open(private_key: X25519PrivateKey, blob_hex: str) -> bytes:
    blob = bytes.fromhex(blob_hex)
    shared = private_key.exchange(X25519PublicKey.from_public_bytes(blob[:32]))
    return AESGCM(shared).decrypt(blob[32:44], blob[44:], None)


def test_seal_then_open_gives_the_pairs_in_order() -> None:
    env = {"B": "two", "A": "é = \"#\n\\", "EMPTY": ""}
    blob = sealed_env.seal(PUBLIC, env)
    assert blob == blob.lower() and len(bytes.fromhex(blob)) == 60 + len(sealed_env.encode(env))
    assert sealed_env.open(KEY, blob) == list(env.items())


def test_blobs_interoperate_with_the_spec_both_ways() -> None:
    spaced = json.dumps({"env": [{"key": "K", "value": "v 1"}]}, indent=2).encode()
    assert sealed_env.open(KEY, spec_seal("0x" + PUBLIC.upper(), spaced)) == [("K", "v 1")]
    made = sealed_env.seal("0x" + PUBLIC, [("K", "v")])
    assert json.loads(spec_open(KEY, made)) == {"env": [{"key": "K", "value": "v"}]}


@pytest.mark.parametrize(("blob", "error"), [
    ("not hex", sealed_env.BadHex),
    ("abc", sealed_env.BadHex),
    ("00" * 59, sealed_env.TooShort),
    (spec_seal(PUBLIC, b'{"env": []}')[:-2] + "00", sealed_env.TagMismatch),
    (sealed_env.seal(sealed_env.public_key_hex(X25519PrivateKey.generate()), {"A": "1"}), sealed_env.TagMismatch),
    (spec_seal(PUBLIC, b"not json"), sealed_env.BadPayload),
    (spec_seal(PUBLIC, b"\xff"), sealed_env.BadPayload),
    (spec_seal(PUBLIC, b'{"env": {"A": "1"}}'), sealed_env.BadPayload),
    (spec_seal(PUBLIC, b'{"env": [{"key": "A", "value": 1}]}'), sealed_env.BadPayload),
], ids=["not-hex", "odd", "short", "flipped-tag", "other-key", "not-json", "not-utf8", "not-list", "value-type"])
def test_bad_blobs_fail_with_their_own_error(blob: str, error: type[sealed_env.SealedEnvError]) -> None:
    with pytest.raises(error):
        sealed_env.open(KEY, blob)


def test_an_empty_set_is_the_shortest_blob() -> None:
    assert len(bytes.fromhex(sealed_env.seal(PUBLIC, {}))) == 60 + len(b'{"env":[]}')
    assert sealed_env.open(KEY, sealed_env.seal(PUBLIC, {})) == []

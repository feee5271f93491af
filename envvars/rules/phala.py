"""Phala CVMs: env-var rules for the sets sealed to an app (`PATCH /api/v1/cvms/{cvm_id}/envs`).

Phala documents no key pattern or length; a CVM's docker compose reads its variables by name, so a key
is a shell-style identifier, and a value may hold anything but NUL (it ends each `KEY=VALUE` entry of a
process environment). The lengths are ours (README, "Phala CVM env API"). Phala answers a bad set
with FastAPI's 422, which has no codes.
"""

from envvars.rules import KeyRules

RULES = KeyRules(
    platform="Phala",
    key_pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    max_key_len=256,
    max_value_len=65_536,
    forbidden_value_chars={"\x00": "a NUL byte, which no process environment can hold"},
)

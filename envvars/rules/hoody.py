"""Hoody containers: env-var rules and error codes from the documented `/api/v1/containers/{id}/env` contract."""

from envvars.rules import KeyRules, Kind

# The page allows any string value; a container's processes get the map as their environment,
# which holds any text but NUL (it ends each `KEY=VALUE` entry).
UNREPRESENTABLE = {"\x00": "a NUL byte, which no process environment can hold"}

KEY_CODES = {kind: "INVALID_ENV_KEY" for kind in (Kind.KEY_TYPE, Kind.KEY_EMPTY, Kind.KEY_TOO_LONG, Kind.KEY_INVALID)}

RULES = KeyRules(
    platform="Hoody",
    key_pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
    max_key_len=256,
    max_value_len=65_536,
    forbidden_value_chars=UNREPRESENTABLE,
    reserved_prefixes=("HOODY_",),
    per_request=(1, 200),
    codes={**KEY_CODES, Kind.KEY_RESERVED_PREFIX: "RESERVED_ENV_PREFIX"},
    default_code="VALIDATION_ERROR",
)

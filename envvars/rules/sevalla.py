"""Sevalla applications: env-var rules and error codes from the documented `/v3/applications/{id}/env-vars` contract."""

from envvars.rules import KeyRules, Kind

# The page limits a key's length (1-255) and nothing else. An application's build and processes get
# the variables as their process environment, which holds any name but one with `=` (it ends the
# name in each `NAME=VALUE` entry) or NUL (it ends the entry): the most permissive pattern that
# still reaches a process intact. A value may hold anything but NUL, for the same reason.
KEY_PATTERN = r"^[^=\x00]+$"
UNREPRESENTABLE = {"\x00": "a NUL byte, which no process environment can hold"}

KEY_CODES = {kind: "invalid-env-var-key" for kind in (Kind.KEY_TYPE, Kind.KEY_EMPTY, Kind.KEY_TOO_LONG,
                                                      Kind.KEY_INVALID)}

RULES = KeyRules(
    platform="Sevalla",
    key_pattern=KEY_PATTERN,
    max_key_len=255,
    max_value_len=32_768,
    forbidden_value_chars=UNREPRESENTABLE,
    codes={**KEY_CODES, Kind.VALUE_TYPE: "invalid-env-var-value", Kind.VALUE_TOO_LONG: "env-var-value-too-long",
           Kind.VALUE_FORBIDDEN_CHAR: "invalid-env-var-value", Kind.SET_TOO_LARGE: "env-var-limit-exceeded"},
    default_code="validation-error",
)

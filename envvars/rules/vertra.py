"""Vertra apps: env-var rules and error codes from the documented `PUT /v1/apps/{id}/environments` contract."""

from envvars.rules import KeyRules, Kind

# The page names the codes, the limit of 25 variables and "forbidden keys"; the lengths, the key pattern and the
# forbidden names are the (README, "Vertra app environments API"). An app gets its variables as its process
# environment: a value may hold anything but NUL (it ends each `KEY=VALUE` entry).
MAX_VARIABLES = 25
MAX_NOTE_LEN = 1000
"""A note is the variable's description, shown beside it; it never reaches the app."""

INVALID = "INVALID_ENVIRONMENT"
TOO_LONG = "ENV_VARIABLE_TOO_LONG"
INVALID_BODY = "INVALID_BODY"

RULES = KeyRules(
    platform="Vertra",
    key_pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    max_key_len=100,
    max_value_len=1000,
    forbidden_value_chars={"\x00": "a NUL byte, which no process environment can hold"},
    forbidden_keys=frozenset({"PORT", "HOST", "PATH", "HOME", "USER", "SHELL"}),
    reserved_any_case=True,
    per_request=(1, MAX_VARIABLES),
    max_resulting=MAX_VARIABLES,
    codes={Kind.KEY_TOO_LONG: TOO_LONG, Kind.VALUE_TOO_LONG: TOO_LONG, Kind.TOO_FEW: INVALID_BODY,
           Kind.TOO_MANY: "ENV_LIMIT_EXCEEDED", Kind.SET_TOO_LARGE: "ENV_LIMIT_EXCEEDED"},
    default_code=INVALID,
)

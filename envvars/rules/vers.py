"""Vers orchestrator: env-var rules from the documented `PUT /api/v1/env_vars` contract."""

from envvars.rules import KeyRules

RULES = KeyRules(
    platform="Vers",
    key_pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    max_key_len=256,
    max_value_len=8192,
    # Values land in /etc/environment, one KEY=VALUE per line, which cannot hold these.
    forbidden_value_chars={
        "\n": "a newline, which /etc/environment cannot represent (one variable per line)",
        "\r": "a carriage return, which /etc/environment cannot represent (one variable per line)",
        "\x00": "a NUL byte, which /etc/environment cannot represent",
    },
)

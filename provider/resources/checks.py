"""Check-time helpers for resources holding a map of variables: rule failures and login warnings."""

from __future__ import annotations

from typing import Any

from envvars.envfile import login_alteration
from envvars.rules import KeyRules, violations
from envvars_provider.values import UNKNOWN


def rule_failures(rules: KeyRules, prop: str, variables: Any, one_request: bool = True) -> list[tuple[str, str]]:
    """Check failures for a map of variables; unknown values are checked once known.

    `one_request`: False when the client splits writes, so per-request counts do not apply.
    """
    if not isinstance(variables, dict):
        return []
    return [(prop, violation.message)
            for violation in violations(rules, variables, unknown=UNKNOWN, one_request=one_request)]


def login_warnings(variables: Any) -> list[str]:
    """A warning for each known value that a login in a VM (pam_env on `/etc/environment`) will not see as written."""
    if not isinstance(variables, dict):
        return []
    found = []
    for key in sorted(variables):
        value = variables[key]
        alteration = login_alteration(key, value) if isinstance(value, str) and value != UNKNOWN else None
        if alteration:
            found.append(f"env var {key!r}: {alteration}; it is stored as written")
    return found

"""Check- and import-time helpers for resources holding variables: rule failures, claims, login warnings,
import ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from envvars.envfile import PAM_LINE_MAX, login_alteration
from envvars.rules import KeyRules, key_violation, violations
from envvars_provider.claims import Claim
from envvars_provider.errors import ProviderError
from envvars_provider.values import UNKNOWN

V = TypeVar("V")


def rule_failures(rules: KeyRules, prop: str, variables: Any, one_request: bool = True) -> list[tuple[str, str]]:
    """Check failures for a map of variables; unknown values are checked once known. The set a write leaves
    holds at least these variables, so they alone may break a limit on the resulting set.

    `one_request`: False when the client splits writes, so per-request counts do not apply.
    """
    if not isinstance(variables, dict):
        return []
    return [(prop, violation.message)
            for violation in violations(rules, variables, variables, unknown=UNKNOWN, one_request=one_request)]


def keys_claim(scope: Callable[[str], str], place: Any, variables: Any) -> Claim | None:
    """The claim of a resource managing the keys of `variables` in `place` (a container, an app), once both
    are known."""
    if not isinstance(place, str) or place == UNKNOWN or not isinstance(variables, dict):
        return None
    return Claim(scope(place), frozenset(variables))


def variable_failures(rules: KeyRules, key: Any, value: Any) -> list[tuple[str, str]]:
    """Check failures of a one-variable resource: its `key`, then its `value`; unknowns are checked once known."""
    if not isinstance(key, str) or key == UNKNOWN:
        return []
    problem = key_violation(rules, key)
    if problem is not None:
        return [("key", problem.message)]
    return rule_failures(rules, "value", {key: value})


def imported(rules: KeyRules, resource_id: str, stored: Mapping[str, V], place: str, forms: str) -> dict[str, V]:
    """The variables an import id `PLACE_ID` (every valid key) or `PLACE_ID/KEY1,KEY2` (just those) stands for.

    Every listed key must be valid and exist; `place` names where they are looked up ("container 'cnt_1'"),
    `forms` the accepted ids ("CONTAINER_ID or CONTAINER_ID/KEY1,KEY2").
    """
    _, slash, listed = resource_id.partition("/")
    if not slash:
        return {key: value for key, value in stored.items() if key_violation(rules, key) is None}
    keys = [key.strip() for key in listed.split(",")]
    if "" in keys:
        raise ProviderError(f"import id {resource_id!r} has an empty key: give {forms}")
    for key in keys:
        problem = key_violation(rules, key)
        if problem is not None:
            raise ProviderError(f"cannot import {key!r}: {problem.message}")
    missing = [key for key in keys if key not in stored]
    if missing:
        raise ProviderError(f"cannot import {', '.join(map(repr, missing))}: {place} has no such variable; import "
                            "only keys that exist")
    return {key: stored[key] for key in keys}


def login_warnings(variables: Any) -> list[str]:
    """A warning for each known value that a login in a VM (pam_env on `/etc/environment`) will not see as written."""
    if not isinstance(variables, dict) or _all_intact(variables):
        return []
    found = []
    for key, value in variables.items():
        alteration = login_alteration(key, value) if isinstance(value, str) and value != UNKNOWN else None
        if alteration:
            found.append((key, f"env var {key!r}: {alteration}; it is stored as written"))
    return [warning for _, warning in sorted(found)]


def _all_intact(variables: dict[Any, Any]) -> bool:
    """Whether no value holds '#' and every line is short, found without a loop over the keys in Python (the
    common case); False means "maybe": `login_warnings` then looks key by key."""
    try:
        values = "".join(variables.values())
        longest = max(map(len, variables), default=0) + max(map(len, variables.values()), default=0)
    except TypeError:  # a key or a value that is not a string
        return False
    return "#" not in values and longest * 4 + 3 <= PAM_LINE_MAX

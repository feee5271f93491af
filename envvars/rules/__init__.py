"""Validation rules for environment-variable sets, declared once per platform as data.

Both the reference server and the Pulumi provider validate through `check_vars`, so a bad key
fails with the same message at `pulumi preview` as it would at the platform's API.
Messages name the key and the rule or limit; they never contain a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

_SHOWN_KEY_CHARS = 64

# A whole set is written into a VM as one file in one agent frame (sandbox/protocol.py: frames of
# 32 MiB, file content at most 16 MiB, sent base64-encoded). At these limits `/etc/environment` is
# at most 4 MiB + 4 bytes a line (`KEY="VALUE"\n`), about 5.4 MiB once encoded: a third of the file
# limit. 10,000 variables is far above real sets (tens to hundreds) and what the provider is
# benchmarked with; at Vers' 8 KiB values the byte limit binds first (about 500 such values).
DEFAULT_MAX_SET_VARS = 10_000
DEFAULT_MAX_SET_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class KeyRules:
    """The documented limits of one platform's environment variables."""

    platform: str
    key_pattern: str
    max_key_len: int
    max_value_len: int
    min_key_len: int = 1
    forbidden_value_chars: Mapping[str, str] = field(default_factory=dict)
    """Characters a value may not hold, each with the reason shown to the user."""
    reserved_prefixes: tuple[str, ...] = ()
    forbidden_keys: frozenset[str] = frozenset()
    max_count: int | None = None

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        """The key pattern, compiled once."""
        return re.compile(self.key_pattern)


class RuleViolation(ValueError):
    """A set of variables breaks one of its platform's rules."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key


def show_key(key: str) -> str:
    """A key as it may appear in a message: quoted, escaped, and cut short when long."""
    shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "…"
    return repr(shown)


def check_key(rules: KeyRules, key: object) -> None:
    """Raise `RuleViolation` when `key` is not a valid variable name on this platform."""
    if not isinstance(key, str):
        raise RuleViolation(f"env var key {key!r} must be a string")
    if len(key) < rules.min_key_len:
        raise RuleViolation(f"env var key {show_key(key)} is empty: keys need at least {rules.min_key_len} char", key)
    if len(key) > rules.max_key_len:
        raise RuleViolation(
            f"env var key {show_key(key)} is too long: {len(key)} chars, the limit is {rules.max_key_len}", key
        )
    if not rules.compiled.fullmatch(key):
        raise RuleViolation(f"env var key {show_key(key)} is invalid: keys must match {rules.key_pattern}", key)
    if key in rules.forbidden_keys:
        raise RuleViolation(f"env var key {show_key(key)} is reserved by {rules.platform} and cannot be set", key)
    for prefix in rules.reserved_prefixes:
        if key.startswith(prefix):
            raise RuleViolation(
                f"env var key {show_key(key)} uses the prefix {prefix!r}, which {rules.platform} reserves", key
            )


def check_value(rules: KeyRules, key: str, value: object) -> None:
    """Raise `RuleViolation` when the value of `key` breaks a value rule; the value is never shown."""
    if not isinstance(value, str):
        raise RuleViolation(f"value of env var {show_key(key)} must be a string, got {type(value).__name__}", key)
    if len(value) > rules.max_value_len:
        raise RuleViolation(
            f"value of env var {show_key(key)} is too long: {len(value)} chars, the limit is {rules.max_value_len}",
            key,
        )
    for char, reason in rules.forbidden_value_chars.items():
        if char in value:
            raise RuleViolation(f"value of env var {show_key(key)} contains {reason}", key)


def check_vars(rules: KeyRules, variables: Mapping[str, object], existing: int = 0) -> None:
    """Raise `RuleViolation` for the first bad key or value of `variables`, in key order."""
    for key in sorted(variables, key=str):
        check_key(rules, key)
        check_value(rules, key, variables[key])
    if rules.max_count is not None and existing + len(variables) > rules.max_count:
        raise RuleViolation(
            f"too many env vars: {existing + len(variables)}, the limit on {rules.platform} is {rules.max_count}"
        )


@dataclass(frozen=True)
class SetLimits:
    """How large one stored set may grow: variables, and UTF-8 bytes of its keys and values together."""

    max_vars: int = DEFAULT_MAX_SET_VARS
    max_bytes: int = DEFAULT_MAX_SET_BYTES


def check_set_size(limits: SetLimits, resulting: Mapping[str, str]) -> None:
    """Raise `RuleViolation` when the set a change would leave (`resulting`) breaks `limits`."""
    if len(resulting) > limits.max_vars:
        raise RuleViolation(
            f"too many env vars: the set would hold {len(resulting)} after this change, "
            f"the limit is {limits.max_vars} per set"
        )
    size = sum(len(key.encode()) + len(value.encode()) for key, value in resulting.items())
    if size > limits.max_bytes:
        raise RuleViolation(
            f"env var set too large: its keys and values would take {size} bytes (UTF-8) after this change, "
            f"the limit is {limits.max_bytes} bytes per set"
        )


def key_json_schema(rules: KeyRules) -> dict[str, Any]:
    """The key rules as JSON Schema, for the OpenAPI document (the server still checks with `check_key`)."""
    schema: dict[str, Any] = {
        "type": "string", "pattern": rules.key_pattern, "minLength": rules.min_key_len, "maxLength": rules.max_key_len,
    }
    if rules.forbidden_keys:
        schema["not"] = {"enum": sorted(rules.forbidden_keys)}
    return schema


def value_json_schema(rules: KeyRules) -> dict[str, Any]:
    """The value rules as JSON Schema, for the OpenAPI document (the server still checks with `check_value`)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": rules.max_value_len}
    if rules.forbidden_value_chars:
        forbidden = "".join(f"\\u{ord(char):04x}" for char in sorted(rules.forbidden_value_chars))
        schema["pattern"] = f"^[^{forbidden}]*$"
    return schema

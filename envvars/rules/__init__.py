"""Validation rules for environment-variable sets, declared once per platform as data.

Both the reference server and the Pulumi provider validate through `violations`, so a bad key
fails with the same message at `pulumi preview` as it would at the platform's API. Each violation
has a kind, which a platform maps to its own error code. Messages name the key and the rule or
limit; they never contain a value. `describe` states the rules for the schema and the OpenAPI
document alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from operator import methodcaller
from typing import Any

_SHOWN_KEY_CHARS = 64
_NEVER = object()  # no placeholder: every value is checked

# A whole set is written into a VM as one file in one agent frame (sandbox/protocol.py: frames of
# 32 MiB, file content at most 16 MiB, sent base64-encoded). At these limits `/etc/environment` is
# at most 4 MiB + 4 bytes a line (`KEY="VALUE"\n`), about 5.4 MiB once encoded: a third of the file
# limit. 10,000 variables is far above real sets (tens to hundreds) and what the provider is
# benchmarked with; at Vers' 8 KiB values the byte limit binds first (about 500 such values).
DEFAULT_MAX_SET_VARS = 10_000
DEFAULT_MAX_SET_BYTES = 4 * 1024 * 1024


class Kind(StrEnum):
    """What a violation breaks; each platform maps kinds to its own error codes."""

    KEY_TYPE = "key_type"
    KEY_EMPTY = "key_empty"
    KEY_TOO_LONG = "key_too_long"
    KEY_INVALID = "key_invalid"
    KEY_FORBIDDEN = "key_forbidden"
    KEY_RESERVED_PREFIX = "key_reserved_prefix"
    VALUE_TYPE = "value_type"
    VALUE_TOO_LONG = "value_too_long"
    VALUE_FORBIDDEN_CHAR = "value_forbidden_char"
    TOO_FEW = "too_few"  # in one request
    TOO_MANY = "too_many"  # in one request
    SET_TOO_LARGE = "set_too_large"  # the set a change would leave


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
    reserved_any_case: bool = False
    """Whether `forbidden_keys` and `reserved_prefixes` are reserved in any case (`port` as `PORT`)."""
    per_request: tuple[int, int] | None = None
    """How many variables one write request may hold (at least, at most), where the platform says."""
    max_resulting: int | None = None
    """How many variables the set may hold after a change, where the platform says."""
    codes: Mapping[Kind, str] = field(default_factory=dict)
    """The platform's error code for each kind of violation, where the platform answers with codes."""
    default_code: str | None = None
    """The code of a kind `codes` does not list."""

    def code(self, violation: Violation) -> str | None:
        """The platform's error code for `violation`."""
        return self.codes.get(violation.kind, self.default_code)

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        """The key pattern, compiled once."""
        return re.compile(self.key_pattern)


@dataclass(frozen=True)
class Violation:
    """One broken rule: its kind, the message (naming the key and the rule, never a value), the key."""

    kind: Kind
    message: str
    key: str | None = None


class RuleViolation(ValueError):
    """A set of variables breaks one of its platform's rules: the first violation, and all of them."""

    def __init__(self, found: Violation | list[Violation]):
        every = found if isinstance(found, list) else [found]
        super().__init__(every[0].message)
        self.violations = every
        self.kind = every[0].kind
        self.message = every[0].message
        self.key = every[0].key


def show_key(key: str) -> str:
    """A key as it may appear in a message: quoted, escaped, and cut short when long."""
    shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS] + "…"
    return repr(shown)


def key_violation(rules: KeyRules, key: object) -> Violation | None:
    """What is wrong with `key` as a variable name on this platform, or None."""
    if not isinstance(key, str):
        return Violation(Kind.KEY_TYPE, f"env var key {key!r} must be a string")
    if len(key) < rules.min_key_len:
        return Violation(Kind.KEY_EMPTY,
                         f"env var key {show_key(key)} is empty: keys need at least {rules.min_key_len} char", key)
    if len(key) > rules.max_key_len:
        return Violation(Kind.KEY_TOO_LONG, f"env var key {show_key(key)} is too long: {len(key)} chars, the limit "
                                            f"is {rules.max_key_len}", key)
    if not rules.compiled.fullmatch(key):
        return Violation(Kind.KEY_INVALID,
                         f"env var key {show_key(key)} is invalid: keys must match {rules.key_pattern}", key)
    if not (rules.forbidden_keys or rules.reserved_prefixes):
        return None
    folded = key.upper() if rules.reserved_any_case else key
    if folded in rules.forbidden_keys:
        how = " (in any case)" if rules.reserved_any_case else ""
        return Violation(Kind.KEY_FORBIDDEN,
                         f"env var key {show_key(key)} is reserved by {rules.platform}{how} and cannot be set", key)
    for prefix in rules.reserved_prefixes:
        if folded.startswith(prefix):
            return Violation(Kind.KEY_RESERVED_PREFIX, f"env var key {show_key(key)} uses the prefix {prefix!r}, "
                                                       f"which {rules.platform} reserves", key)
    return None


def value_violation(rules: KeyRules, key: str, value: object) -> Violation | None:
    """What is wrong with the value of `key`, or None; the value is never shown."""
    if not isinstance(value, str):
        return Violation(Kind.VALUE_TYPE,
                         f"value of env var {show_key(key)} must be a string, got {type(value).__name__}", key)
    if len(value) > rules.max_value_len:
        return Violation(Kind.VALUE_TOO_LONG, f"value of env var {show_key(key)} is too long: {len(value)} chars, "
                                              f"the limit is {rules.max_value_len}", key)
    for char, reason in rules.forbidden_value_chars.items():
        if char in value:
            return Violation(Kind.VALUE_FORBIDDEN_CHAR, f"value of env var {show_key(key)} contains {reason}", key)
    return None


def violations(
    rules: KeyRules, variables: Mapping[str, object], resulting: Mapping[str, object] | None = None,
    unknown: object = _NEVER, one_request: bool = True,
) -> list[Violation]:
    """Every rule `variables` break, in key order, then the counts; a value equal to `unknown` (a
    preview's placeholder) is checked once known. `resulting`: the set after the change.
    `one_request`: whether `variables` are one write request (else a client may split them)."""
    broken = []  # (key, violation), in the map's order: sorted once at the end, as there are few
    for key, value in [] if _plainly_valid(rules, variables, unknown) else variables.items():
        problem = key_violation(rules, key)
        if problem is None and (unknown is _NEVER or value != unknown):
            problem = value_violation(rules, key, value)
        if problem is not None:
            broken.append((key, problem))
    broken.sort(key=lambda pair: str(pair[0]))
    found = [problem for _, problem in broken]
    if rules.per_request is not None and one_request:
        least, most = rules.per_request
        if not least <= len(variables) <= most:
            kind = Kind.TOO_FEW if len(variables) < least else Kind.TOO_MANY
            found.append(Violation(kind, f"{len(variables)} env vars in one request: {rules.platform} takes "
                                         f"{least} to {most}"))
    if rules.max_resulting is not None and resulting is not None and len(resulting) > rules.max_resulting:
        found.append(Violation(Kind.SET_TOO_LARGE, f"too many env vars: the set would hold {len(resulting)} after this "
                                                   f"change, the limit on {rules.platform} is {rules.max_resulting}"))
    return found


def _plainly_valid(rules: KeyRules, variables: Mapping[str, object], unknown: object) -> bool:
    """Whether no key or known value breaks a rule, found with operations on the whole map: the common case
    without a loop over the keys in Python. False means "maybe": `violations` then checks key by key."""
    keys = list(variables)
    values = list(variables.values()) if unknown is _NEVER else [v for v in variables.values() if v != unknown]
    try:
        if not all(map(rules.compiled.fullmatch, keys)):  # TypeError for a key not a str
            return False
        joined = "".join(values)  # type: ignore[arg-type]  # TypeError for a value not a str
    except TypeError:
        return False
    if keys and not rules.min_key_len <= min(map(len, keys)) <= max(map(len, keys)) <= rules.max_key_len:
        return False
    if values and max(map(len, values)) > rules.max_value_len:  # type: ignore[arg-type]
        return False
    if any(char in joined for char in rules.forbidden_value_chars):
        return False
    folded = [key.upper() for key in keys] if rules.reserved_any_case else keys
    reserved = rules.reserved_prefixes
    return rules.forbidden_keys.isdisjoint(folded) and not (reserved and any(
        map(methodcaller("startswith", reserved), folded)))


def check_key(rules: KeyRules, key: object) -> None:
    """Raise `RuleViolation` when `key` is not a valid variable name on this platform."""
    problem = key_violation(rules, key)
    if problem is not None:
        raise RuleViolation(problem)


def check_vars(rules: KeyRules, variables: Mapping[str, object], resulting: Mapping[str, object] | None = None) -> None:
    """Raise `RuleViolation` (carrying every violation) when `variables` break a rule."""
    found = violations(rules, variables, resulting)
    if found:
        raise RuleViolation(found)


def describe(rules: KeyRules) -> str:
    """The rules in one or two sentences, for the schema's and the OpenAPI document's descriptions."""
    keys = f"Keys match `{rules.key_pattern}` ({rules.min_key_len}–{rules.max_key_len} chars)"
    if rules.reserved_prefixes:
        keys += " and do not start with " + " or ".join(f"`{prefix}`" for prefix in rules.reserved_prefixes)
    if rules.forbidden_keys:
        keys += "; these keys are reserved" + (" in any case" if rules.reserved_any_case else "") + ": " + ", ".join(
            f"`{key}`" for key in sorted(rules.forbidden_keys))
    values = f"values are at most {rules.max_value_len} chars"
    if rules.forbidden_value_chars:
        names = [reason.split(",")[0].removeprefix("a ").removeprefix("an ")
                 for reason in rules.forbidden_value_chars.values()]
        values += " with no " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])
    counts = ""
    if rules.per_request is not None:
        counts += f" One request holds {rules.per_request[0]} to {rules.per_request[1]} variables."
    if rules.max_resulting is not None:
        counts += f" A set holds at most {rules.max_resulting} variables."
    return f"{keys}; {values}.{counts}"


@dataclass(frozen=True)
class SetLimits:
    """How large one stored set may grow: variables, and UTF-8 bytes of its keys and values together."""

    max_vars: int = DEFAULT_MAX_SET_VARS
    max_bytes: int = DEFAULT_MAX_SET_BYTES


def check_set_size(limits: SetLimits, resulting: Mapping[str, str]) -> None:
    """Raise `RuleViolation` when the set a change would leave (`resulting`) breaks `limits`."""
    if len(resulting) > limits.max_vars:
        raise RuleViolation(Violation(
            Kind.SET_TOO_LARGE, f"too many env vars: the set would hold {len(resulting)} after this change, "
                                f"the limit is {limits.max_vars} per set"))
    size = sum(len(key.encode()) + len(value.encode()) for key, value in resulting.items())
    if size > limits.max_bytes:
        raise RuleViolation(Violation(
            Kind.SET_TOO_LARGE, f"env var set too large: its keys and values would take {size} bytes (UTF-8) after "
                                f"this change, the limit is {limits.max_bytes} bytes per set"))


def key_json_schema(rules: KeyRules) -> dict[str, Any]:
    """The key rules as JSON Schema, for the OpenAPI document (the server still checks with `check_key`)."""
    return {"type": "string", "pattern": rules.key_pattern, "minLength": rules.min_key_len,
            "maxLength": rules.max_key_len, **reserved_json_schema(rules)}


def reserved_json_schema(rules: KeyRules) -> dict[str, Any]:
    """The keys the platform reserves (whole keys, prefixes) as a JSON Schema `not`, or nothing."""
    excluded: list[dict[str, Any]] = []
    if rules.forbidden_keys:
        keys = sorted(rules.forbidden_keys)
        excluded.append({"pattern": "^(?:" + "|".join(map(_any_case, keys)) + ")$"} if rules.reserved_any_case
                        else {"enum": keys})
    if rules.reserved_prefixes:
        spell = _any_case if rules.reserved_any_case else re.escape
        excluded.append({"pattern": "^(?:" + "|".join(spell(prefix) for prefix in rules.reserved_prefixes) + ")"})
    if not excluded:
        return {}
    return {"not": excluded[0] if len(excluded) == 1 else {"anyOf": excluded}}


def _any_case(text: str) -> str:
    """A regular expression matching `text` in any case, with no inline flag (JSON Schema's ECMA-262 has none)."""
    return "".join(f"[{char.upper()}{char.lower()}]" if char.upper() != char.lower() else re.escape(char)
                   for char in text)


def value_json_schema(rules: KeyRules) -> dict[str, Any]:
    """The value rules as JSON Schema, for the OpenAPI document (the server still checks with `violations`)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": rules.max_value_len}
    if rules.forbidden_value_chars:
        forbidden = "".join(f"\\u{ord(char):04x}" for char in sorted(rules.forbidden_value_chars))
        schema["pattern"] = f"^[^{forbidden}]*$"
    return schema

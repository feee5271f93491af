"""Vertra's request bodies: read by hand, so each mistake gets Vertra's own code and names the key and the rule,
and documented by the JSON Schemas below, which accept exactly what the reading accepts (save a key repeated in one
request, which no JSON Schema can express).

The shape of the body (not JSON, not an array, empty, a key given twice) is `INVALID_BODY`; what is wrong inside one
variable (a missing or mistyped field) is `INVALID_ENVIRONMENT`, or `ENV_VARIABLE_TOO_LONG` for a note too long.
Fields a variable does not have (`id`, `created_at` of a listed variable sent back) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envvars.rules import key_json_schema, show_key, value_json_schema
from envvars.rules.vertra import INVALID, INVALID_BODY, MAX_NOTE_LEN, MAX_VARIABLES, RULES, TOO_LONG
from envvars_server.errors import ApiError

WRAPPER = "environments"
ENTRY: dict[str, Any] = {
    "type": "object", "required": ["key", "value"],
    "properties": {"key": key_json_schema(RULES), "value": value_json_schema(RULES),
                   "note": {"type": ["string", "null"], "maxLength": MAX_NOTE_LEN,
                            "description": "A note shown beside the variable; null or absent: none (on an edit, "
                                           "absent keeps the variable's note, null removes it)"}}}
ENTRIES: dict[str, Any] = {"type": "array", "items": ENTRY, "minItems": 1, "maxItems": MAX_VARIABLES}
UPSERT_BODY: dict[str, Any] = {"type": "object", "required": [WRAPPER], "properties": {WRAPPER: ENTRIES}}
# POST takes one variable, a bare array, or the wrapper: an object with `environments` is the wrapper.
LIST_BODY: dict[str, Any] = {"anyOf": [UPSERT_BODY, ENTRIES, {**ENTRY, "not": {"required": [WRAPPER]}}]}
DELETE_BODY: dict[str, Any] = {"type": "object", "required": ["keys"], "properties": {"keys": {
    "type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}}}
JSON_ONLY = "request body must be JSON sent with Content-Type: application/json"


@dataclass(frozen=True)
class Entry:
    """One variable of a write: its key and value, and its note where the body gives one (None clears it)."""

    key: str
    value: str
    attributes: dict[str, Any]


def _body_error(message: str) -> ApiError:
    return ApiError(400, message, INVALID_BODY)


def _entry(index: int, item: Any) -> Entry:
    """The variable `item` describes, or INVALID_ENVIRONMENT naming what is wrong (the rules come later)."""
    where = f"environments[{index}]"
    if not isinstance(item, dict):
        raise ApiError(400, f"{where} must be an object {{key, value, note?}}, got {_kind(item)}", INVALID)
    if "key" not in item:
        raise ApiError(400, f"{where}: key is required", INVALID)
    key = item["key"]
    if not isinstance(key, str):
        raise ApiError(400, f"{where}: key must be a string, got {_kind(key)}", INVALID)
    if not isinstance(item.get("value"), str):
        got = "nothing" if "value" not in item else _kind(item["value"])
        raise ApiError(400, f"{where}: value of env var {show_key(key)} must be a string, got {got}", INVALID)
    attributes: dict[str, Any] = {}
    if "note" in item:
        note = item["note"]
        if note is not None and not isinstance(note, str):
            raise ApiError(400, f"{where}: note of env var {show_key(key)} must be a string or null, got "
                                f"{_kind(note)}", INVALID)
        if note is not None and len(note) > MAX_NOTE_LEN:
            raise ApiError(400, f"note of env var {show_key(key)} is too long: {len(note)} chars, the limit is "
                                f"{MAX_NOTE_LEN}", TOO_LONG)
        attributes["note"] = note
    return Entry(key, item["value"], attributes)


def _kind(value: Any) -> str:
    """A JSON value's type, as a message names it (never the value)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def entries(body: Any, wrapped_only: bool) -> list[Entry]:
    """The variables of a write body: `{"environments": [...]}`, or unless `wrapped_only` also a bare array or one
    variable; INVALID_BODY for any other shape, an empty array or a key given twice."""
    if isinstance(body, bytes):
        raise _body_error(JSON_ONLY)
    items: Any
    if isinstance(body, dict) and WRAPPER in body:
        items = body[WRAPPER]
    elif not wrapped_only and isinstance(body, list):
        items = body
    elif not wrapped_only and isinstance(body, dict):
        items = [body]
    else:
        shapes = '{"environments": [...]}' if wrapped_only else 'one {key, value, note?}, an array of them, or ' \
                                                                 '{"environments": [...]}'
        raise _body_error(f"request body must be {shapes}, got {_kind(body)}")
    if not isinstance(items, list):
        raise _body_error(f"environments must be an array of {{key, value, note?}} objects, got {_kind(items)}")
    if not items:
        raise _body_error(f"environments is empty: give 1 to {MAX_VARIABLES} variables")
    written = [_entry(index, item) for index, item in enumerate(items)]
    seen: set[str] = set()
    for entry in written:
        if entry.key in seen:
            raise _body_error(f"env var key {show_key(entry.key)} appears more than once in one request: give each "
                              "key once")
        seen.add(entry.key)
    return written


def keys_of(body: Any) -> list[str]:
    """The keys of a delete body `{"keys": [...]}`: at least one, each a string, each once."""
    if isinstance(body, bytes):
        raise _body_error(JSON_ONLY)
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(key, str) for key in keys):
        raise _body_error('request body must be {"keys": [...]}: a non-empty array of keys (strings)')
    if len(set(keys)) < len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise _body_error(f"env var key {show_key(repeated)} appears more than once in one request: give each key once")
    return keys

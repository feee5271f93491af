"""Pulumi property values on the wire: Struct conversion, secret wrappers and preview unknowns.

The engine marks a secret as `{SIG_KEY: SECRET_SIG, "value": v}` and an unknown (a value not
computed yet, in preview) as the string `UNKNOWN`. Resources see plain Python values; the
servicer unwraps secrets on the way in and wraps them again on the way out.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        fields = value.struct_value.fields
        # A string is the common case: read it without the kind; only "" (maybe not a string) goes the long way.
        # (Indexing the map is faster than its items(), which upb implements in Python.)
        return {key: fields[key].string_value or _value(fields[key]) for key in fields}
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    return None


def from_struct(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    """A Struct as a plain dict (numbers are floats, as on the wire)."""
    if struct is None:
        return {}
    return {key: _value(item) for key, item in struct.fields.items()}


def unwrapped(value: struct_pb2.Value) -> tuple[struct_pb2.Value | None, bool]:
    """The Value a secret wrapper holds (None if none) and True, or `value` itself and False."""
    if value.WhichOneof("kind") == "struct_value":
        fields = value.struct_value.fields
        signature = fields.get(SIG_KEY)
        if signature is not None and signature.string_value == SECRET_SIG:
            return fields.get("value"), True
    return value, False


def revealed(value: struct_pb2.Value) -> tuple[Any, bool]:
    """`reveal(_value(value))` in one walk: the plain value, secret wrappers removed, and whether it held any."""
    inner, wrapped = unwrapped(value)
    if wrapped:
        return (None if inner is None else revealed(inner)[0]), True
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        found: list[bool] = []

        def other(item: struct_pb2.Value) -> Any:
            plain, inner = revealed(item)
            if inner:
                found.append(True)
            return plain

        return {key: fields[key].string_value or other(fields[key]) for key in fields}, bool(found)
    if kind == "list_value":
        pairs = [revealed(item) for item in value.list_value.values]
        return [item for item, _ in pairs], any(inner for _, inner in pairs)
    return _value(value), False


def to_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """A dict as a Struct."""
    struct = struct_pb2.Struct()
    fill_struct(struct, values)
    return struct


def fill_struct(struct: struct_pb2.Struct, values: dict[str, Any]) -> None:
    """`struct.update(values)`, with strings and nested dicts kept off its per-item Python path."""
    fields = struct.fields
    for key, item in values.items():
        if isinstance(item, str):
            fields[key].string_value = item
        elif isinstance(item, dict):
            target = fields[key].struct_value
            target.Clear()
            fill_struct(target, item)
        else:
            struct.update({key: item})


def is_secret(value: Any) -> bool:
    """Whether `value` is the engine's secret wrapper."""
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def secret(value: Any) -> dict[str, Any]:
    """`value` wrapped as a secret (idempotent)."""
    return value if is_secret(value) else {SIG_KEY: SECRET_SIG, "value": value}


def reveal(value: Any) -> tuple[Any, bool]:
    """`value` with every secret wrapper removed, and whether it held any."""
    if is_secret(value):
        return reveal(value.get("value"))[0], True
    if isinstance(value, dict):
        found = False
        plain = {}
        for key, item in value.items():
            if isinstance(item, str):  # the common case, kept off the recursion
                plain[key] = item
                continue
            plain[key], inner = reveal(item)
            found = found or inner
        return plain, found
    if isinstance(value, list):
        pairs = [reveal(item) for item in value]
        return [item for item, _ in pairs], any(inner for _, inner in pairs)
    return value, False


def has_unknown(value: Any) -> bool:
    """Whether `value` is, or holds anywhere, a preview unknown."""
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(has_unknown(item) for item in value)
    return False

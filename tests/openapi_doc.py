"""The server's OpenAPI document, for tests that cover every operation of every platform.

The document is built in-process (the same one the server serves, checked by the fuzz tests), so
tests can be parametrized over it at collection time: a new platform's routes are covered as soon
as its routers are registered in `server/platforms/__init__.py`.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from envvars_server.app import create_app


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document of a fresh app."""
    with tempfile.TemporaryDirectory() as data_dir:
        return create_app(Path(data_dir)).openapi()


def operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation."""
    return [(method.upper(), path) for path, ops in document()["paths"].items() for method in ops]


def operation(method: str, path: str) -> dict[str, Any]:
    """One operation's definition."""
    return dict(document()["paths"][path][method.lower()])


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its top-level `$ref` followed."""
    while "$ref" in schema:
        schema = document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def body_schema(method: str, path: str) -> dict[str, Any] | None:
    """The JSON request body's schema of an operation, or None when it takes no body."""
    body = operation(method, path).get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(body["schema"]) if body else None


def sample(schema: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """A minimal instance of `schema` (required properties only); `overrides` gives values by property name."""
    schema = resolve(schema)
    if "anyOf" in schema and schema.get("type") != "object":  # a union of types: the first that is not null
        return sample(next(s for s in schema["anyOf"] if s.get("type") != "null"), overrides)
    if "const" in schema or "enum" in schema:
        return schema.get("const", (schema.get("enum") or [None])[0])
    kind = schema.get("type")
    if kind == "object":  # an object's `anyOf` says which properties it needs besides `required`: the first's
        required = [*schema.get("required", []), *(schema["anyOf"][0].get("required", []) if "anyOf" in schema else [])]
        return {name: overrides[name] if name in overrides else sample(schema["properties"][name], overrides)
                for name in required}
    if kind == "array":
        return [sample(schema.get("items", {}), overrides)] if schema.get("minItems") else []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x"


def documented_statuses(method: str, path: str) -> set[int]:
    """The statuses an operation documents."""
    return {int(status) for status in operation(method, path)["responses"]}

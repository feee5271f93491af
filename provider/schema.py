"""The Pulumi package schema, derived from the resource and config declarations (never hand-kept).

`python -m envvars_provider.schema schema.json` (`make gen-schema`) writes it; GetSchema serves
the same document built in memory, so the plugin and schema.json cannot drift.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from envvars_provider import VERSION
from envvars_provider.config import settings
from envvars_provider.registry import PLATFORMS, RESOURCES
from envvars_provider.resources.base import STRING_LIST, STRING_MAP, Prop

# How users name the SDKs: `import * as envvars from "@envvars/pulumi"`, and in Go
# `github.com/envvars/pulumi-envvars/sdk/go/envvars` (a module to `replace` with the dist copy).
NPM_PACKAGE = "@envvars/pulumi"
GO_MODULE = "github.com/envvars/pulumi-envvars/sdk/go"
# The least versions the TypeScript SDK declares; the exact ones it is built with are pinned in
# tools/sdk-build/package-lock.json.
PULUMI_SDK = "3.259.0"
TYPESCRIPT = "^5.9.3"

TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    STRING_MAP: {"type": "object", "additionalProperties": {"type": "string"}},
    STRING_LIST: {"type": "array", "items": {"type": "string"}},
}


def _property(prop: Prop) -> dict[str, Any]:
    spec: dict[str, Any] = {**TYPES[prop.type], "description": prop.description}
    if prop.secret:
        spec["secret"] = True
    if prop.replace_on_change:
        spec["replaceOnChanges"] = True
    if prop.default is not None:
        spec["default"] = prop.default
    return spec


def _config() -> dict[str, dict[str, Any]]:
    variables = {}
    for setting in settings():
        spec: dict[str, Any] = {"type": "string", "description": setting.description,
                                "defaultInfo": {"environment": [setting.env]}}
        if setting.default is not None:
            spec["default"] = setting.default
        if setting.secret:
            spec["secret"] = True
        variables[setting.wire] = spec
    return variables


def build() -> dict[str, Any]:
    """The whole schema document."""
    config = _config()
    resources = {}
    for resource in RESOURCES:
        resources[resource.token] = {
            "description": resource.description,
            "properties": {prop.wire: _property(prop) for prop in resource.props()},
            "required": sorted(prop.wire for prop in resource.props() if prop.required or prop.default is not None),
            "inputProperties": {prop.wire: _property(prop) for prop in resource.inputs},
            "requiredInputs": sorted(prop.wire for prop in resource.inputs if prop.required),
        }
    return {
        "name": "envvars",
        "displayName": "envvars",
        "version": VERSION,
        "description": "Environment-variable collections as infrastructure, with real diff and replace "
                       f"semantics: {', '.join(platform.title for platform in PLATFORMS)}.",
        "keywords": ["pulumi", "envvars", "environment", *(platform.name for platform in PLATFORMS),
                     "category/utility", "kind/native"],
        "license": "Apache-2.0",
        "config": {"variables": config},
        "provider": {
            "description": "The envvars provider: one per platform account.",
            "inputProperties": config,
            "properties": {name: spec for name, spec in config.items() if not spec.get("secret")},
        },
        "resources": resources,
        # supportPack: the Go generator writes the SDK's go.mod (module GO_MODULE), and every SDK
        # carries the schema's version.
        "meta": {"supportPack": True},
        "language": {
            "python": {"packageName": "pulumi_envvars", "requires": {"pulumi": ">=3.0.0,<4.0.0"},
                       "pyproject": {"enabled": True}, "respectSchemaVersion": True},
            "nodejs": {"packageName": NPM_PACKAGE, "respectSchemaVersion": True,
                       "dependencies": {"@pulumi/pulumi": f"^{PULUMI_SDK}"},
                       "typescriptVersion": TYPESCRIPT},
            "go": {"importBasePath": f"{GO_MODULE}/envvars", "modulePath": GO_MODULE,
                   "respectSchemaVersion": True},
        },
    }


def render() -> str:
    """The schema as committed: sorted, indented, with a trailing newline."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], "w") as out:
        out.write(render())

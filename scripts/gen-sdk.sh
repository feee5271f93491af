#!/usr/bin/env bash
# Generate the SDKs from schema.json with the pinned Pulumi release's code generators:
# SDK_DIR/python, SDK_DIR/nodejs and SDK_DIR/go (each replaced whole).
#
#   scripts/gen-sdk.sh SCHEMA_JSON SDK_DIR
#
# `pulumi package gen-sdk` runs each generator inside its language host, and the Python host of
# the pinned release cannot be fetched here (tools/pulumi/python-host/go.mod says why), so
# tools/pulumi/gensdk calls the same generators, from the same pkg/v3 release, directly.
# The tool is built once into the engine cache beside the pinned CLI, keyed by its source (so
# worktrees at different revisions never run each other's build).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SCHEMA_JSON SDK_DIR" >&2; exit 2; }
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(tr -d ' \t\r\n' <"$repo_root/tools/pulumi/VERSION")
key=$(cat "$repo_root/tools/pulumi/gensdk/main.go" "$repo_root/tools/pulumi/go.sum" | sha256sum | cut -c1-16)
tool=${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$version/gensdk/$key/gensdk
if [ ! -x "$tool" ]; then
    echo "gen-sdk: building the SDK generators of Pulumi v$version" >&2
    mkdir -p "$(dirname "$tool")"
    (cd "$repo_root/tools/pulumi" && GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
        go build -trimpath -o "$tool.tmp" ./gensdk) >&2
    mv "$tool.tmp" "$tool"
fi
"$tool" "$1" "$2"

#!/usr/bin/env bash
# Generate sdk/python from schema.json with the pinned Pulumi release's Python code generator.
#
#   scripts/gen-sdk.sh SCHEMA_JSON OUT_DIR
#
# `pulumi package gen-sdk` runs that generator inside the Python language host, and the host of
# the pinned release cannot be fetched here (tools/pulumi/python-host/go.mod says why), so
# tools/pulumi/gensdk calls the same generator, from the same pkg/v3 release, directly.
# The tool is built once into the engine cache beside the pinned CLI.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SCHEMA_JSON OUT_DIR" >&2; exit 2; }
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(tr -d ' \t\r\n' <"$repo_root/tools/pulumi/VERSION")
tool=${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$version/gensdk/gensdk
if [ ! -x "$tool" ] || [ "$repo_root/tools/pulumi/gensdk/main.go" -nt "$tool" ]; then
    echo "gen-sdk: building the Python SDK generator of Pulumi v$version" >&2
    mkdir -p "$(dirname "$tool")"
    (cd "$repo_root/tools/pulumi" && GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
        go build -trimpath -o "$tool.tmp" ./gensdk) >&2
    mv "$tool.tmp" "$tool"
fi
"$tool" "$1" "$2"

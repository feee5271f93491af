#!/usr/bin/env bash
# Build the generated TypeScript and Go SDKs with the versions pinned in tools/sdk-build/.
#
#   scripts/build-sdks.sh     prints the directory of the built TypeScript package (ready for `npm pack`)
#
# TypeScript: the npm packages of tools/sdk-build/package-lock.json are installed once (`npm ci`) into
# the user's cache, keyed by the lock file; sdk/nodejs is copied to build/sdk/nodejs and compiled with
# that tsc. Go: every package of sdk/go is compiled inside tools/sdk-build, whose go.mod/go.sum pin the
# pulumi Go SDK (modules come from the module proxy into the Go module cache once).
# Concurrent runs (test workers) take turns; a build whose inputs have not changed is reused.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pins=$repo_root/tools/sdk-build
out=$repo_root/build/sdk/nodejs
mkdir -p "$repo_root/build/sdk"
exec 9>"$repo_root/build/sdk/.lock"
flock 9

lock_key=$(sha256sum <"$pins/package-lock.json" | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/envvars
# A folder named node_modules, so that packages inside it find each other through the link below.
modules=$cache/npm-$lock_key/node_modules
if [ ! -d "$modules" ]; then
    echo "build-sdks: installing the pinned npm packages" >&2
    mkdir -p "$cache"
    staging=$(mktemp -d "$cache/.npm.XXXXXX")
    cp "$pins/package.json" "$pins/package-lock.json" "$staging/"
    (cd "$staging" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
    mkdir -p "$(dirname "$modules")"
    mv "$staging/node_modules" "$modules"
    rm -rf "$staging"
fi

sources_key=$( (echo "$modules"; cd "$repo_root/sdk/nodejs" && find . -type f ! -path './node_modules/*' \
    ! -path './bin/*' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
if [ "$(cat "$out/.built" 2>/dev/null)" != "$sources_key" ]; then
    rm -rf "$out"
    cp -r "$repo_root/sdk/nodejs" "$out"
    rm -rf "$out/node_modules" "$out/bin"
    ln -s "$modules" "$out/node_modules"
    (cd "$out" && node_modules/.bin/tsc -p .) >&2
    cp "$out/package.json" "$out/README.md" "$out/bin/"
    echo "$sources_key" >"$out/.built"
fi

(cd "$pins" && GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
    go build github.com/envvars/pulumi-envvars/sdk/go/...) >&2

echo "$out/bin"

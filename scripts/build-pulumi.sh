#!/usr/bin/env bash
# Build (or find) the pinned Pulumi CLI and its Python language host.
#
#   PULUMI_BIN=$(scripts/build-pulumi.sh)
#
# The last (and only) line on stdout is a directory holding `pulumi`,
# `pulumi-language-python` and `pulumi-language-python-exec`; progress goes to
# stderr. The version is pinned in tools/pulumi/VERSION and must match the
# github.com/pulumi/pulumi/pkg/v3 requirement in tools/pulumi/go.mod.
#
# Where the binaries come from, first match wins:
#   1. the cache: ${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$VERSION/bin
#   2. a `pulumi` of the pinned version on PATH with pulumi-language-python
#      (and its -exec script) beside it
#   3. a fresh build from the Go module proxy, into the cache (needs `go`).
#
# The Python language host is built from tools/pulumi/python-host, which pins
# its own github.com/pulumi/pulumi/sdk/v3 release: see the comment in its go.mod.
set -euo pipefail

log() { printf 'build-pulumi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir=$repo_root/tools/pulumi
host_dir=$tools_dir/python-host

VERSION=$(tr -d ' \t\r\n' <"$tools_dir/VERSION")
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad version '$VERSION' in tools/pulumi/VERSION"

# The version that a go.mod requires for a module (first match).
gomod_require() { # FILE MODULE
    awk -v m="$2" '($1 == m) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1"
}
gomod_go() { awk '$1 == "go" { print $2; exit }' "$1"; }

pkg_version=$(gomod_require "$tools_dir/go.mod" github.com/pulumi/pulumi/pkg/v3)
[[ $pkg_version == "v$VERSION" ]] ||
    die "tools/pulumi/VERSION says $VERSION but tools/pulumi/go.mod requires pkg/v3 $pkg_version"
host_version=$(gomod_require "$host_dir/go.mod" github.com/pulumi/pulumi/sdk/v3)
[[ -n $host_version ]] || die "tools/pulumi/python-host/go.mod does not require pulumi sdk/v3"

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$VERSION
cache_bin=$cache_root/bin

# usable DIR: DIR has a pulumi of the pinned version and the Python host.
usable() {
    local dir=$1 out
    [[ -x $dir/pulumi && -x $dir/pulumi-language-python && -f $dir/pulumi-language-python-exec ]] || return 1
    out=$(PULUMI_SKIP_UPDATE_CHECK=1 "$dir/pulumi" version 2>/dev/null) || return 1
    [[ $out == "v$VERSION" ]]
}

if usable "$cache_bin"; then
    log "using cached Pulumi v$VERSION"
    printf '%s\n' "$cache_bin"
    exit 0
fi

if on_path=$(command -v pulumi 2>/dev/null); then
    path_dir=$(cd "$(dirname "$on_path")" && pwd)
    if usable "$path_dir"; then
        log "using Pulumi v$VERSION found on PATH"
        printf '%s\n' "$path_dir"
        exit 0
    fi
fi

command -v go >/dev/null || die "Pulumi v$VERSION is not cached and Go is not installed to build it"

# Use the installed Go when it is new enough for the pinned modules, otherwise
# let the go command fetch the toolchain they ask for from the module proxy.
need_go=$(printf '%s\n' "$(gomod_go "$tools_dir/go.mod")" "$(gomod_go "$host_dir/go.mod")" | sort -V | tail -n1)
have_go=$(go env GOVERSION)
have_go=${have_go#go}
if [[ $(printf '%s\n' "$need_go" "$have_go" | sort -V | head -n1) == "$need_go" ]]; then
    export GOTOOLCHAIN=local
else
    log "Go $have_go is older than the $need_go the pinned modules need; fetching go$need_go"
    export GOTOOLCHAIN=go$need_go
fi
export GOWORK=off
# go.sum is committed: fail rather than let the build edit go.mod or go.sum.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$tmp/bin"

ldflags() { echo "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$1"; }

start=$SECONDS
log "building pulumi v$VERSION (about 5 minutes on 2 cores with a cold Go build cache)"
(cd "$tools_dir" && go build -trimpath -ldflags "$(ldflags "v$VERSION")" \
    -o "$tmp/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) >&2

log "building pulumi-language-python $host_version"
(cd "$host_dir" && go build -trimpath -ldflags "$(ldflags "$host_version")" \
    -o "$tmp/bin/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python) >&2

# The host runs Python programs through this script, which it expects next to
# itself; take it from the sdk/v3 release that matches the pinned CLI.
sdk_dir=$(cd "$tools_dir" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$tmp/bin/pulumi-language-python-exec"

usable "$tmp/bin" || die "the freshly built pulumi does not report v$VERSION"
log "built in $((SECONDS - start))s"

# Swap the finished directory in, so an interrupted build never leaves a
# half-filled cache behind.
if [[ -e $cache_bin ]]; then
    rm -rf "$cache_root/bin.old"
    mv "$cache_bin" "$cache_root/bin.old"
fi
mv -T "$tmp/bin" "$cache_bin"
rm -rf "$cache_root/bin.old"
log "installed into $cache_bin"
printf '%s\n' "$cache_bin"

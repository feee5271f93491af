#!/usr/bin/env bash
# Build (or find) the pinned Pulumi CLI and its language hosts.
#
#   PULUMI_BIN=$(scripts/build-pulumi.sh)
#
# The last (and only) line on stdout is a directory holding `pulumi`,
# `pulumi-language-python` (and its -exec script), `pulumi-language-nodejs`,
# `pulumi-language-go` and `pulumi-language-yaml`; progress goes to stderr. The version is pinned in tools/pulumi/VERSION and must match the
# github.com/pulumi/pulumi/pkg/v3 requirement in tools/pulumi/go.mod.
#
# Where the binaries come from, first match wins:
#   1. the cache: ${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$VERSION/bin
#   2. a `pulumi` of the pinned version on PATH with every host beside it
#   3. a fresh build from the Go module proxy, into the cache (needs `go`).
# A cached CLI is never rebuilt for a host: a host missing from the cache, or
# built from another version than its go.mod pins, is built on its own.
#
# Each language host is built from its own module, tools/pulumi/<lang>-host,
# which pins the release that still holds it: see the comment in each go.mod.
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

# The other hosts: language, the module that holds the command, the command's package.
HOSTS=(
    "nodejs github.com/pulumi/pulumi/sdk/v3 github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"
    "go github.com/pulumi/pulumi/sdk/v3 github.com/pulumi/pulumi/sdk/v3/go/pulumi-language-go"
    "yaml github.com/pulumi/pulumi-yaml github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml"
)
# pinned LANG MODULE: the version of MODULE that tools/pulumi/LANG-host/go.mod requires.
pinned() {
    local version
    version=$(gomod_require "$tools_dir/$1-host/go.mod" "$2")
    [[ -n $version ]] || die "tools/pulumi/$1-host/go.mod does not require $2"
    printf '%s\n' "$version"
}

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/envvars/pulumi-$VERSION
cache_bin=$cache_root/bin

# host_ok DIR LANG MODULE: DIR has LANG's host. In the cache, its stamp must name the pinned
# version; a host found beside a pulumi on PATH has no stamp and is taken as it is.
host_ok() {
    local stamp=$1/.pulumi-language-$2.version
    [[ -x $1/pulumi-language-$2 ]] || return 1
    [[ $1 != "$cache_bin" && ! -f $stamp ]] && return 0
    [[ -f $stamp && $(<"$stamp") == "$(pinned "$2" "$3")" ]]
}

# usable DIR: DIR has a pulumi of the pinned version and the Python host.
usable() {
    local dir=$1 out
    [[ -x $dir/pulumi && -x $dir/pulumi-language-python && -f $dir/pulumi-language-python-exec ]] || return 1
    out=$(PULUMI_SKIP_UPDATE_CHECK=1 "$dir/pulumi" version 2>/dev/null) || return 1
    [[ $out == "v$VERSION" ]]
}

# missing_hosts DIR: the languages whose host DIR lacks (or holds from another version).
missing_hosts() {
    local entry lang module _
    for entry in "${HOSTS[@]}"; do
        read -r lang module _ <<<"$entry"
        host_ok "$1" "$lang" "$module" || printf '%s\n' "$lang"
    done
}

engine_cached=false
if usable "$cache_bin"; then
    engine_cached=true
    if [[ -z $(missing_hosts "$cache_bin") ]]; then
        log "using cached Pulumi v$VERSION"
        printf '%s\n' "$cache_bin"
        exit 0
    fi
elif on_path=$(command -v pulumi 2>/dev/null); then
    path_dir=$(cd "$(dirname "$on_path")" && pwd)
    if usable "$path_dir" && [[ -z $(missing_hosts "$path_dir") ]]; then
        log "using Pulumi v$VERSION found on PATH"
        printf '%s\n' "$path_dir"
        exit 0
    fi
fi

command -v go >/dev/null || die "Pulumi v$VERSION or a language host is not cached and Go is not installed to build it"

# Use the installed Go when it is new enough for the pinned modules, otherwise
# let the go command fetch the toolchain they ask for from the module proxy.
need_go=$(for mod in "$tools_dir"/go.mod "$tools_dir"/*-host/go.mod; do gomod_go "$mod"; done | sort -V | tail -n1)
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
# build_host LANG MODULE PACKAGE: LANG's host into $tmp/bin, with its version stamp.
build_host() {
    local version var=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
    version=$(pinned "$1" "$2")
    [[ $2 == github.com/pulumi/pulumi-yaml ]] && var=github.com/pulumi/pulumi-yaml/pkg/version.Version
    log "building pulumi-language-$1 $version"
    (cd "$tools_dir/$1-host" && go build -trimpath -ldflags "-X $var=$version" \
        -o "$tmp/bin/pulumi-language-$1" "$3") >&2
    printf '%s\n' "$version" >"$tmp/bin/.pulumi-language-$1.version"
}

if $engine_cached; then
    # Only the hosts the cache lacks; each moved in once built, so the cache is never half a host.
    for lang in $(missing_hosts "$cache_bin"); do
        for entry in "${HOSTS[@]}"; do
            [[ ${entry%% *} == "$lang" ]] && build_host $entry
        done
        mv -f "$tmp/bin/pulumi-language-$lang" "$cache_bin/"
        mv -f "$tmp/bin/.pulumi-language-$lang.version" "$cache_bin/"
    done
    log "built in $((SECONDS - start))s, into $cache_bin"
    printf '%s\n' "$cache_bin"
    exit 0
fi

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

for entry in "${HOSTS[@]}"; do
    build_host $entry
done

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

#!/usr/bin/env bash
# Host tools the reference server needs: bubblewrap isolates each VM sandbox; libpam with pam_env
# builds a VM login's environment; PostgreSQL's server binaries run the tests of the PostgreSQL store
# (tests/postgres.py) and the replicas of a cluster; HAProxy balances requests over those replicas
# (tests/cluster.py, make demo-cluster); as root, setpriv (util-linux) runs a sandbox as an unprivileged
# id and mkfs.ext4 (e2fsprogs) makes its disk image.
set -euo pipefail
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
has() { compgen -G "/usr/lib/$1" >/dev/null || compgen -G "/lib/$1" >/dev/null; }
has '*/libpam.so.0' || missing+=(libpam0g)
has '*/security/pam_env.so' || missing+=(libpam-modules)
has 'postgresql/*/bin/postgres' || missing+=(postgresql)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null || missing+=(util-linux)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
fi
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: missing ${missing[*]}; install as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2

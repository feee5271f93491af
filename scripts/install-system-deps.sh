#!/usr/bin/env bash
# Host tools the reference server needs: bubblewrap isolates each VM sandbox.
set -euo pipefail
command -v bwrap >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: bubblewrap (bwrap) is missing; install it as root: apt-get install bubblewrap" >&2
    exit 1
fi
echo "install-system-deps: installing bubblewrap" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >&2

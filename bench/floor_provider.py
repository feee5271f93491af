"""The engine floor's plugin (bench/floor/main.go): built once from the module proxy, cached, reused.

It is built as scripts/build-pulumi.sh builds the engine: the pulumi sdk/v3 release pinned in
bench/floor/go.mod (the one tools/pulumi/VERSION names), go.sum enforced (`-mod=readonly`), the
installed Go when it is new enough and otherwise the toolchain go.mod asks for. The binary goes
under the user's cache dir, in a folder named by a digest of the sources, so any edit rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import REPO

SOURCE = REPO / "bench" / "floor"
PLUGIN = "pulumi-resource-envvars"  # the same plugin name, so the same program runs against it


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.removeprefix("go").split(".") if part.isdigit())


def _go_env(go: str) -> dict[str, str]:
    """The build's environment: the pinned modules as go.sum has them, the toolchain they need."""
    need = next(line.split()[1] for line in (SOURCE / "go.mod").read_text().splitlines() if line.startswith("go "))
    have = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    flags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-mod=readonly"]))
    toolchain = "local" if _version(have) >= _version(need) else f"go{need}"
    return {**os.environ, "GOWORK": "off", "GOFLAGS": flags, "GOTOOLCHAIN": toolchain}


def _check_pin() -> None:
    """The sdk/v3 that go.mod requires is the release of the pinned engine (tools/pulumi/VERSION)."""
    version = (REPO / "tools" / "pulumi" / "VERSION").read_text().strip()
    wanted = f"github.com/pulumi/pulumi/sdk/v3 v{version}"
    if wanted not in (SOURCE / "go.mod").read_text():
        raise RuntimeError(f"bench/floor/go.mod must require {wanted}, the engine's release (tools/pulumi/VERSION)")


def plugin_dir() -> Path:
    """The folder holding the floor's `pulumi-resource-envvars`, built on first use (about 10 s with a warm
    Go build cache, a minute or more with a cold one)."""
    _check_pin()
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envvars"
    built = cache / f"bench-floor-{digest.hexdigest()[:16]}"
    if (built / PLUGIN).is_file():
        return built
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the engine floor provider is not built yet and Go is not installed to build it")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-floor-", dir=cache) as tmp:
        done = subprocess.run([go, "build", "-trimpath", "-o", str(Path(tmp) / "bin" / PLUGIN), "."], cwd=SOURCE,
                              env=_go_env(go), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the engine floor provider failed:\n{done.stderr}")
        try:
            (Path(tmp) / "bin").rename(built)  # whole or not at all, even with two builds at once
        except OSError:
            if not (built / PLUGIN).is_file():
                raise
    return built

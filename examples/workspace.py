"""Run the real Pulumi CLI on an example program, offline: a temp PULUMI_HOME and a local file backend.

Used by `make demo`, the CLI tests and the benchmarks. The engine comes from
`scripts/build-pulumi.sh` (built once, cached); the plugin and the Python SDK come from the project's
`.venv`. TypeScript programs get the SDK built by `scripts/build-sdks.sh` and their npm packages from a
cache keyed by their lock file; Go programs build against `sdk/go` (the `replace` in their go.mod).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from envvars_provider.config import settings

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envvars"


@cache
def pulumi_bin() -> Path:
    """The directory of the pinned `pulumi` and `pulumi-language-python` (built on first use)."""
    built = subprocess.run([str(REPO / "scripts" / "build-pulumi.sh")], check=True, capture_output=True, text=True)
    return Path(built.stdout.strip().splitlines()[-1])


@cache
def sdk_nodejs() -> Path:
    """The built TypeScript SDK's package directory (built on first use, reused while sdk/nodejs is unchanged)."""
    built = subprocess.run([str(REPO / "scripts" / "build-sdks.sh")], check=True, capture_output=True, text=True)
    return Path(built.stdout.strip().splitlines()[-1])


def node_modules(program: Path) -> Path:
    """`program`'s npm packages, installed once per lock file and SDK build into the user's cache.

    Programs whose lock files differ only in their names share one install. The SDK is installed as a copy
    (`--install-links`), so it and the program share one `@pulumi/pulumi`.
    """
    sdk = sdk_nodejs()
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(re.sub(rf'"name": "{program.name}"', "", (program / name).read_text()).encode())
    for path in sorted(path for path in sdk.rglob("*") if path.is_file()):
        digest.update(path.read_bytes())
    target = CACHE / "node_modules" / digest.hexdigest()[:16]
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            for name in ("package.json", "package-lock.json"):  # the SDK's relative path made absolute
                text = (program / name).read_text()
                (staging / name).write_text(re.sub(r"file:(\.\./)+build/sdk/nodejs/bin", f"file:{sdk}", text))
            subprocess.run(["npm", "install", "--install-links", "--prefer-offline", "--no-audit", "--no-fund",
                            "--loglevel=error"],
                           cwd=staging, check=True, capture_output=True, text=True, timeout=600)
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent install that won the rename
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


def _go_dir() -> list[str]:
    go = shutil.which("go")
    return [str(Path(go).parent)] if go else []


class Workspace:
    """One copy of an example program, its own stack state and Pulumi home, pointed at one server."""

    def __init__(self, tmp: Path, program: Path, server_url: str, token: str, stack: str = "dev"):
        self.dir = tmp / program.name
        shutil.copytree(program, self.dir, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__",
                                                                         "node_modules"))
        project = (self.dir / "Pulumi.yaml").read_text()
        # The program's relative paths into the repository (`../../.venv`, `../../sdk/go`) made absolute.
        (self.dir / "Pulumi.yaml").write_text(re.sub(r"(\.\./)+\.venv", str(VENV_BIN.parent), project))
        if (self.dir / "package.json").exists():
            (self.dir / "node_modules").symlink_to(node_modules(program))
        if (self.dir / "go.mod").exists():
            gomod = (self.dir / "go.mod").read_text()
            (self.dir / "go.mod").write_text(re.sub(r"=> (\.\./)+sdk/go", f"=> {REPO / 'sdk' / 'go'}", gomod))
        (tmp / "state").mkdir(exist_ok=True)
        self.env = {
            # The Go host builds Go programs with the `go` of the caller's PATH.
            "PATH": os.pathsep.join([str(pulumi_bin()), str(VENV_BIN), *_go_dir(), "/usr/local/bin", "/usr/bin",
                                     "/bin"]),
            "HOME": os.environ.get("HOME", str(tmp)),
            "PULUMI_HOME": str(tmp / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "envvars-test-passphrase",
            "PULUMI_SKIP_UPDATE_CHECK": "1",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "NO_COLOR": "1",
            # The pinned language host predates runtime.options.virtualenv: name the venv's python.
            "PULUMI_PYTHON_CMD": str(VENV_BIN / "python"),
            # The caller's Go settings (GOCACHE, GOMODCACHE, GOTOOLCHAIN, ...) for the Go host's builds.
            **{name: value for name, value in os.environ.items() if name.startswith("GO")},
            # Every platform's URL and token settings point at the one reference server and user (add-ons, such
            # as a registrar, are configured by the programs that use them).
            **{setting.env: server_url if setting.is_url else token for setting in settings() if not setting.addon},
        }
        self.stack = stack
        self.run("stack", "init", stack)

    def run(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`pulumi ARGS --non-interactive` in the program's directory."""
        result = subprocess.run(
            [str(pulumi_bin() / "pulumi"), *args, "--non-interactive"], cwd=self.dir,
            env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=600,
        )
        if check and result.returncode != 0:
            output = f"{result.stdout}\n{result.stderr}"
            raise AssertionError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{output}")
        return result

    def up(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`pulumi up --yes --skip-preview`."""
        return self.run("up", "--yes", "--skip-preview", *args, **kwargs)

    def preview(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`pulumi preview --diff`."""
        return self.run("preview", "--diff", *args, **kwargs)

    def destroy(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`pulumi destroy --yes --skip-preview`."""
        return self.run("destroy", "--yes", "--skip-preview", *args, **kwargs)

    def outputs(self) -> dict[str, Any]:
        """The stack outputs, secrets shown."""
        return dict(json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout))

    def export(self) -> str:
        """The stack's state file as the engine exports it (secrets stay encrypted)."""
        return self.run("stack", "export").stdout

    def set_config(self, key: str, value: str, secret: bool = False) -> None:
        """`pulumi config set`, the value passed on stdin so it never appears in a process listing."""
        args = [str(pulumi_bin() / "pulumi"), "config", "set", key, "--non-interactive"]
        if secret:
            args.append("--secret")
        subprocess.run(args, cwd=self.dir, env=self.env, input=value, capture_output=True, text=True, check=True)

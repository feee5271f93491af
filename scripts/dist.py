"""Build every artifact a user installs into dist/ (`make dist`; or into DIR: `dist.py DIR`), replacing what
was there.

- envvars-VERSION-py3-none-any.whl: the provider (`pulumi-resource-envvars`) and the reference server
  (`envvars-server`), with their pinned dependencies;
- pulumi_envvars-VERSION-py3-none-any.whl: the Python SDK;
- envvars-pulumi-VERSION.tgz: the TypeScript SDK as `npm pack` makes it (compiled JavaScript and typings);
- envvars-go-sdk-vVERSION.zip: the Go SDK's module (go.mod and sources) in one folder, to `replace` or vendor;
- pulumi-resource-envvars-vVERSION-linux-amd64.tar.gz: the plugin, for
  `pulumi plugin install resource envvars VERSION --file ARCHIVE`.

The plugin archive is a Python plugin: `PulumiPlugin.yaml` (runtime python) and a requirements.txt naming
the provider wheel it carries, so `pulumi plugin install` has the Python language host make a virtual
environment in the plugin's folder and install the provider there. The engine runs a plugin's
executable when the folder has one, and the Python host pinned here cannot start a plugin itself (it
predates how the engine names the plugin's folder), so a launcher, `pulumi-resource-envvars`, runs the
provider from that environment.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from envvars_provider import VERSION

REPO = Path(__file__).resolve().parent.parent
PROVIDER = "pulumi-resource-envvars"

PLUGIN_YAML = """\
# A Python plugin: `pulumi plugin install` makes a virtual environment here and installs requirements.txt.
runtime:
  name: python
  options:
    virtualenv: venv
"""

# Language hosts that read `virtualenv` put the environment in venv/; the one pinned here puts it in
# the plugin's folder itself.
LAUNCHER = f"""\
#!/bin/sh
# The envvars provider, run from the virtual environment that `pulumi plugin install` made beside this file.
here=$(cd "$(dirname "$0")" && pwd)
for env in "$here/venv" "$here"; do
    if [ -x "$env/bin/{PROVIDER}" ]; then exec "$env/bin/{PROVIDER}" "$@"; fi
done
echo "{PROVIDER}: no Python environment in $here; run 'pulumi plugin install' with this plugin's archive" >&2
exit 1
"""


def wheels(dist: Path) -> Path:
    """The provider's and the Python SDK's wheels; the provider's path."""
    with tempfile.TemporaryDirectory() as tmp:
        # sdk/python is built from a copy: a build inside it would leave files the freshness test sees.
        sdk = Path(tmp) / "python"
        shutil.copytree(REPO / "sdk" / "python", sdk, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--wheel-dir", str(dist), str(REPO), str(sdk)], check=True)
    [provider] = dist.glob("envvars-*.whl")
    return provider


def npm_package(dist: Path) -> None:
    """`npm pack` of the TypeScript SDK compiled by scripts/build-sdks.sh."""
    built = subprocess.run([str(REPO / "scripts" / "build-sdks.sh")], check=True, capture_output=True, text=True)
    package = built.stdout.strip().splitlines()[-1]
    subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(dist), package], check=True,
                   stdout=subprocess.DEVNULL)


def go_module(dist: Path, release: str) -> None:
    """sdk/go as one folder in a zip: unzip it and `replace` the module path with that folder."""
    folder = f"envvars-go-sdk-v{release}"
    root = REPO / "sdk" / "go"
    with zipfile.ZipFile(dist / f"{folder}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(path, f"{folder}/{path.relative_to(root)}")


def plugin_archive(dist: Path, release: str, provider_wheel: Path) -> None:
    """The plugin: PulumiPlugin.yaml, requirements.txt, the provider wheel and the launcher."""
    files = {
        "PulumiPlugin.yaml": (PLUGIN_YAML, 0o644),
        "requirements.txt": (f"./{provider_wheel.name}\n", 0o644),
        PROVIDER: (LAUNCHER, 0o755),
    }
    with tarfile.open(dist / f"{PROVIDER}-v{release}-linux-amd64.tar.gz", "w:gz") as archive:
        for name, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
        archive.add(provider_wheel, provider_wheel.name)


def main() -> None:
    dist = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir()
    provider_wheel = wheels(dist)
    npm_package(dist)
    go_module(dist, VERSION)
    plugin_archive(dist, VERSION, provider_wheel)
    for artifact in sorted(dist.iterdir()):
        print(artifact)


if __name__ == "__main__":
    main()

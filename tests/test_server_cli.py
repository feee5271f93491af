"""The `envvars-server` command line: token creation, and a clear refusal when VMs cannot be isolated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from envvars_server.launch import free_port

SERVER = [sys.executable, "-m", "envvars_server.cli"]


def test_token_create_prints_a_working_token_once(tmp_path: Path, server) -> None:
    result = subprocess.run([*SERVER, "token", "create", "--user", "cli-user", "--data-dir", str(server.data_dir)],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert token.startswith("evt_")
    response = requests.get(f"{server.url}/api/v1/env_vars", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
    assert response.status_code == 200


def test_serve_refuses_clearly_without_bubblewrap(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SERVER, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env={"PATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "envvars-server: cannot start VMs on this host: bubblewrap is not installed: no `bwrap` on PATH "
        "(apt-get install bubblewrap)")

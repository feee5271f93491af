"""No secret in any output: after a CLI run with distinctive values, scan everything that was written.

The run: `up`, `preview`, `refresh` and `destroy`, each with `-v=9 --logtostderr`, of a program whose
values come from a secret config value and from a plain program string, against a server logging at
debug level with its access log on. Scanned for the values and the API token: the stack export and
every backend file, the engine's output, the provider's own stderr (captured by a wrapper the engine
starts instead of the plugin), the server's log, and for the token the SQLite files.

Exempt, and counted: the engine's own -v=9 trace of the properties it marshals, which prints the
elements of a secret before it recognises the wrapper (the pinned engine's behaviour, not ours).
The DB file is not scanned for values: Vers does not promise encryption at rest, and the reference
server stores Vers values in plaintext (platforms that promise it will encrypt, and be scanned).
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE
from examples.workspace import Workspace
from tests.figures import figure

pytestmark = pytest.mark.slow

FLEET = Path(__file__).resolve().parent / "programs" / "fleet"
ENGINE_PROPERTY_TRACE = re.compile(r'"msg":"(Unm|M)arshaling property for RPC\[')
VERBOSE = ("-v=9", "--logtostderr")


def plugin_wrapper(directory: Path, stderr: Path) -> Path:
    """A folder whose `pulumi-resource-envvars` runs the real plugin at debug level, its stderr appended to `stderr`."""
    directory.mkdir()
    wrapper = directory / "pulumi-resource-envvars"
    real = Path(sys.executable).parent / "pulumi-resource-envvars"
    # The engine does not pass its own -v to plugins: ask the provider for its debug log explicitly.
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" -v=9 "$@" 2>>"{stderr}"\n')
    wrapper.chmod(0o755)
    return directory


def hits(text: str, needles: list[str]) -> list[str]:
    return [line for line in text.splitlines() if any(needle in line for needle in needles)]


def test_no_secret_in_exports_logs_or_stderr(tmp_path: Path) -> None:
    base, plain = f"s3cr3t-{uuid.uuid4()}", f"pl41n-{uuid.uuid4()}"
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log, ServerProcess(tmp_path / "data", log=log,
                                                    args=["--log-level", "debug", "--access-log"]) as server:
        token = server.token("secrets")
        needles = [base, plain, token]
        ws = Workspace(tmp_path, FLEET, server.url, token)
        provider_stderr = tmp_path / "provider.stderr"
        wrapper = plugin_wrapper(tmp_path / "plugin", provider_stderr)
        project = ws.dir / "Pulumi.yaml"
        project.write_text(re.sub(r"path: .*", f"path: {wrapper}", project.read_text()))
        ws.env["FLEET_PLAIN_VALUE"] = plain
        ws.set_config("secretValue", base, secret=True)
        ws.set_config("count", "5")
        ws.set_config("vms", "1")

        engine = ""
        for result in (ws.up(*VERBOSE), ws.preview(*VERBOSE), ws.run("refresh", "--yes", *VERBOSE)):
            engine += result.stdout + result.stderr
        exported = ws.export()
        engine_destroy = ws.destroy(*VERBOSE)
        engine += engine_destroy.stdout + engine_destroy.stderr
        token_in_db = sum(token.encode() in path.read_bytes() for path in (tmp_path / "data").glob(DB_FILE + "*"))

    backend = "".join(path.read_text(errors="replace") for path in (tmp_path / "state").rglob("*") if path.is_file())
    engine_hits = hits(engine, needles)
    exempt = [line for line in engine_hits if ENGINE_PROPERTY_TRACE.search(line)]
    found = {
        "stack export": hits(exported, needles),
        "backend files": hits(backend, needles),
        "engine -v=9 output": [line for line in engine_hits if line not in exempt],
        "provider stderr": hits(provider_stderr.read_text(), needles),
        "server log": hits(server_log.read_text(), needles),
    }
    figure("secrets scan", values=len(needles), engine_log_lines=len(engine.splitlines()),
           provider_stderr_lines=len(provider_stderr.read_text().splitlines()),
           server_log_lines=len(server_log.read_text().splitlines()),
           hits=sum(len(lines) for lines in found.values()) + token_in_db,
           engine_property_trace_lines_exempt=len(exempt))
    assert provider_stderr.read_text(), "the wrapper captured nothing: the scan would prove nothing"
    assert "PUT /api/v1/env_vars" in server_log.read_text(), "the server's access log is not in the scan"
    assert {name: lines[:3] for name, lines in found.items() if lines} == {}
    assert token_in_db == 0

"""No secret in any output: after a CLI run with distinctive values, scan everything that was written; and on the
server side, for every platform, no value in the server's log or any file it wrote besides its DB.

The run: `up`, `preview`, `refresh`, then both values changed and `preview --diff` and `up --diff`
of the change, then `destroy`, each with `-v=9 --logtostderr`, of a program whose values come from a
secret config value and from a plain program string (in `EnvVars.vars`, secret by default), and that
boots a VM with the set (a second one with the changed set), against a server logging at debug
level with its access log on. Scanned for the old and the new values and the API token: the stack
export and every backend file, the engine's output, the diff output of the change (on its own, so a
diff that prints what changed is named), the provider's own stderr (captured by a wrapper the
engine starts instead of the plugin), the server's log, every file the server wrote in its data dir
while the VMs were up (among them each VM's `agent.log`, the stdout and stderr of the VM's bubblewrap
and guest agent: the agent's log, a line per request, and it keeps no other), and for the token the
SQLite files.

Exempt, and counted: the engine's own -v=9 trace of the properties it marshals, which prints the
elements of a secret before it recognises the wrapper (the pinned engine's behaviour, not ours).
The DB file is not scanned for values: Vers does not promise encryption at rest, and the reference
server stores Vers values in plaintext (platforms that promise it will encrypt, and be scanned).
Nor are the VMs' disks (`disk.img`, or a `root/` tree, of each VM and commit): the env set is
written to the VM's `/etc/environment`, which is the point of a VM booted with it.

The server-side scan runs for every platform (`tests/platforms.py`): values written every way the
platform offers (bulk and single-key), one refused for a newline, then a workload booted with them
(a Vers VM, a restarted Hoody container) and read back from inside it, so the values went through
the guest agent; then the server's debug log with its access log, and every file the server wrote
(each workload's `agent.log` among them) are scanned for the values and the token. The CLI part is
Vers' until a second platform has a provider resource.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

from envvars_server.launch import ServerProcess
from envvars_server.machines import ETC_ENVIRONMENT, PROCESS_ENVIRONMENT
from envvars_server.sandbox.disk import IMAGE, ROOT
from envvars_server.store import DB_FILE
from examples.workspace import Workspace
from tests import platforms
from tests.conftest import Api
from tests.figures import figure

DELIVERIES = (ETC_ENVIRONMENT, PROCESS_ENVIRONMENT)  # where a workload's env file may be written

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


def server_written(data_dir: Path) -> dict[Path, str]:
    """Every file the server wrote in its data dir, save the DB files and the VMs' and commits' disks."""
    return {path: path.read_text(errors="replace") for path in sorted(data_dir.rglob("*"))
            if path.is_file() and not path.is_symlink() and not path.name.startswith(DB_FILE)
            and path.name != IMAGE and ROOT not in path.relative_to(data_dir).parts}


@pytest.mark.slow
def test_no_secret_in_exports_logs_or_stderr(tmp_path: Path) -> None:
    base, plain = f"s3cr3t-{uuid.uuid4()}", f"pl41n-{uuid.uuid4()}"
    new_base, new_plain = f"n3w-s3cr3t-{uuid.uuid4()}", f"n3w-pl41n-{uuid.uuid4()}"
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log, ServerProcess(tmp_path / "data", log=log,
                                                    args=["--log-level", "debug", "--access-log"]) as server:
        token = server.token("secrets")
        needles = [base, plain, new_base, new_plain, token]
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
        # The change: a new secret, a new plain value, and a second VM that boots with the changed set.
        ws.env["FLEET_PLAIN_VALUE"] = new_plain
        ws.set_config("secretValue", new_base, secret=True)
        ws.set_config("vms", "2")
        diffs = [result.stdout + result.stderr for result in (ws.preview(*VERBOSE), ws.up("--diff", *VERBOSE))]
        diff = "".join(diffs)
        exported = ws.export()
        data_files = server_written(tmp_path / "data")  # before destroy, which deletes each VM's directory
        engine_destroy = ws.destroy(*VERBOSE)
        engine += engine_destroy.stdout + engine_destroy.stderr
        token_in_db = sum(token.encode() in path.read_bytes() for path in (tmp_path / "data").glob(DB_FILE + "*"))

    backend = "".join(path.read_text(errors="replace") for path in (tmp_path / "state").rglob("*") if path.is_file())
    engine_hits, diff_hits = hits(engine, needles), hits(diff, needles)
    exempt = [line for line in engine_hits + diff_hits if ENGINE_PROPERTY_TRACE.search(line)]
    agent_logs = {path: text for path, text in data_files.items() if path.name == "agent.log"}
    found = {
        "stack export": hits(exported, needles),
        "backend files": hits(backend, needles),
        "engine -v=9 output": [line for line in engine_hits if line not in exempt],
        "preview --diff and up --diff of the change": [line for line in diff_hits if line not in exempt],
        "provider stderr": hits(provider_stderr.read_text(), needles),
        "server log": hits(server_log.read_text(), needles),
        **{f"data dir file {path.relative_to(tmp_path)}": hits(text, needles) for path, text in data_files.items()},
    }
    figure("secrets scan", values=len(needles), engine_log_lines=len(engine.splitlines()),
           diff_lines=len(diff.splitlines()), provider_stderr_lines=len(provider_stderr.read_text().splitlines()),
           server_log_lines=len(server_log.read_text().splitlines()), data_dir_files=len(data_files),
           agent_logs=len(agent_logs), agent_log_bytes=sum(len(text) for text in agent_logs.values()),
           hits=sum(len(lines) for lines in found.values()) + token_in_db,
           engine_property_trace_lines_exempt=len(exempt))
    assert provider_stderr.read_text(), "the wrapper captured nothing: the scan would prove nothing"
    assert "PUT /api/v1/env_vars" in server_log.read_text(), "the server's access log is not in the scan"
    # Both runs diffed both changed values (masked), and the second VM booted.
    for output in diffs:
        assert "~ value: [secret] => [secret]" in output, "the changed secret was not diffed"
        assert "~ FLEET_PLAIN: [secret] => [secret]" in output, "the changed plain value was not diffed"
    assert len(agent_logs) == 2, f"the scan did not see both VMs' agent logs: {sorted(map(str, agent_logs))}"
    assert all("WriteFile '/etc/environment'" in text for text in agent_logs.values()), \
        "an agent log does not show the env injection, the moment the values passed through the agent"
    leaks = {name: lines[:3] for name, lines in found.items() if lines}
    assert leaks == {}, f"values or the token found in: {', '.join(f'{name} ({len(found[name])})' for name in leaks)}"
    assert token_in_db == 0


@pytest.mark.parametrize("platform", platforms.NAMES)
def test_the_server_never_logs_values(tmp_path: Path, platform: str) -> None:
    bulk, single, refused = f"bu1k-{uuid.uuid4()}", f"s1ngle-{uuid.uuid4()}", f"r3fused-{uuid.uuid4()}"
    server_log = tmp_path / "server.log"
    with server_log.open("w") as log, ServerProcess(tmp_path / "data", log=log,
                                                    args=["--log-level", "debug", "--access-log"]) as server:
        token = server.token("server-secrets")
        needles = [bulk, single, refused, token]
        with Api(server.url, token) as api:
            env_set = platforms.kit(platform).env_set(api)
            for request in env_set.set_requests("SINGLE", single):
                assert env_set.acknowledged(api.request(**request)), request["method"]
            assert env_set.acknowledged(env_set.merge({"BULK": bulk}))
            refusal = platforms.envelope_of(env_set.write_url).validation_status
            assert env_set.merge({"REFUSED": refused + "\x00X=1"}).status_code == refusal  # NUL: refused everywhere
            workload = env_set.apply()
            seen = api.get(f"{platforms.WORKLOADS}/{workload}/environment").json()["vars"]
            assert (seen.get("BULK"), seen.get("SINGLE")) == (bulk, single), "the values did not reach the workload"
            data_files = server_written(tmp_path / "data")
            assert env_set.delete_answer(env_set.delete("BULK")) in ("removed", "idempotent")
            env_set.close()
    log_text = server_log.read_text()
    agent_logs = {path: text for path, text in data_files.items() if path.name == "agent.log"}
    found = {"server log": hits(log_text, needles)}
    found |= {f"data dir file {path.relative_to(tmp_path)}": hits(text, needles) for path, text in data_files.items()}
    figure(f"secrets scan {platform} (server side)", values=len(needles), server_log_lines=len(log_text.splitlines()),
           data_dir_files=len(data_files), agent_logs=len(agent_logs), hits=sum(map(len, found.values())))
    assert " 200" in log_text and "/env" in log_text, "the server's access log is not in the scan"
    assert agent_logs and all(any(f"WriteFile '{delivery.path}'" in text for delivery in DELIVERIES)
                              for text in agent_logs.values()), \
        "no agent log shows the env injection, the moment the values passed through the agent"
    leaks = {name: lines[:3] for name, lines in found.items() if lines}
    assert leaks == {}, f"values or the token found in: {', '.join(leaks)}"

"""The guest agent's limits: exec output and time, file size, and no setuid/setgid files from WriteFile."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from envvars_server.sandbox import GuestError, Sandbox, agent, pam, protocol
from envvars_server.sandbox.agent import exec_command, write_file
from envvars_server.sandbox.protocol import (
    MAX_EXEC_OUTPUT,
    MAX_EXEC_TIMEOUT_S,
    MAX_FILE,
    AgentClient,
    AgentUnavailable,
    recv_frame,
    recv_line,
)

# A binary-sized payload: a write that small (one buffered write, flushed after the chmod)
# would have the kernel clear setuid by itself, hiding the bug.
BINARY = b"\x7fELF" + bytes(64 * 1024)


@pytest.fixture(autouse=True)
def login_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PAM service a VM's agent finds at PAM_CONFDIR, for exec run in this process."""
    (tmp_path / pam.SERVICE).write_text(pam.service(str(tmp_path / "environment")))
    monkeypatch.setattr(agent, "PAM_CONFDIR", str(tmp_path))


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Exec in this process, as the agent does it; the output decoded."""
    result = exec_command(request)
    return {"exit_code": result["exit_code"], "stdout": base64.b64decode(result["stdout_b64"]),
            "stderr": base64.b64decode(result["stderr_b64"])}


def agent_peak_rss_kib(vm: Sandbox) -> int:
    """The agent's peak resident memory so far: VmHWM of the parent of an exec'd shell."""
    result = vm.client().exec(["sh", "-c", "grep VmHWM /proc/$PPID/status"])
    assert result["exit_code"] == 0, result["stderr"]
    return int(result["stdout"].split()[1])


def guest_mode(vm: Sandbox, path: str) -> str:
    """The permission bits of a file as the guest sees them (`stat -c %a`: 4755 when setuid)."""
    return vm.client().exec(["stat", "-c", "%a", path])["stdout"].strip()


# -- exec output -----------------------------------------------------------------------------------

def test_exec_output_flood_is_too_large_and_killed_early(tmp_path: Path) -> None:
    finished = tmp_path / "finished"
    started = time.monotonic()
    with pytest.raises(GuestError) as error:
        run({"command": ["sh", "-c", f"head -c 64M /dev/zero; touch {finished}"]})
    assert error.value.code == "too_large"
    assert str(MAX_EXEC_OUTPUT) in error.value.message
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    assert not finished.exists()  # the shell was killed while head was still writing


def test_exec_output_cap_counts_stdout_and_stderr_together() -> None:
    at_cap = run({"command": ["head", "-c", str(MAX_EXEC_OUTPUT), "/dev/zero"]})
    assert at_cap["stdout"] == b"\0" * MAX_EXEC_OUTPUT
    half = MAX_EXEC_OUTPUT // 2
    split = f"head -c {half} /dev/zero; head -c {MAX_EXEC_OUTPUT - half + 1} /dev/zero >&2"
    with pytest.raises(GuestError) as error:
        run({"command": ["sh", "-c", split]})
    assert error.value.code == "too_large"


def test_exec_output_flood_does_not_grow_the_agent(sandbox: Sandbox) -> None:
    before = agent_peak_rss_kib(sandbox)
    started = time.monotonic()
    for redirect in ("", ">&2"):
        with pytest.raises(GuestError) as error:
            sandbox.client().exec(["sh", "-c", f"head -c 64M /dev/zero {redirect}"])
        assert error.value.code == "too_large"
    assert time.monotonic() - started < 10
    assert agent_peak_rss_kib(sandbox) - before < 16 * 1024  # KiB; buffering the flood would take 64 MiB+


def test_exec_with_stdin_still_round_trips_past_a_pipe_buffer() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: needs writing and reading at the same time
    assert run({"command": ["cat"], "stdin_b64": base64.b64encode(data).decode()})["stdout"] == data


# -- exec timeout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [{}, {"timeout_s": 0}, {"timeout_s": None}], ids=["absent", "0", "null"])
def test_exec_without_timeout_is_killed_after_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, timeout: dict[str, Any],
) -> None:
    monkeypatch.setattr("envvars_server.sandbox.agent.DEFAULT_EXEC_TIMEOUT_S", 0.5)
    late = tmp_path / "late"
    started = time.monotonic()
    with pytest.raises(GuestError) as error:
        run({"command": ["sh", "-c", f"sleep 30; touch {late}"], **timeout})
    assert error.value.code == "timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("timeout_s", [MAX_EXEC_TIMEOUT_S + 1, 10**9, -1, float("nan"), float("inf")])
def test_exec_refuses_a_timeout_above_the_maximum(timeout_s: float) -> None:
    with pytest.raises(GuestError) as error:
        run({"command": ["true"], "timeout_s": timeout_s})
    assert error.value.code == "bad_request"
    assert str(MAX_EXEC_TIMEOUT_S) in error.value.message


def test_exec_client_never_waits_forever(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(protocol, "DEFAULT_EXEC_TIMEOUT_S", 0.2)
    path = str(tmp_path / "vsock.sock")
    requests: list[dict[str, Any] | None] = []
    release = threading.Event()

    def silent_agent(listener: socket.socket) -> None:
        """Take the request, then never answer (a frozen guest) until the test ends."""
        conn, _ = listener.accept()
        with conn:
            recv_line(conn)
            conn.sendall(b"OK 1073741824\n")
            requests.append(recv_frame(conn))
            release.wait(10)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        thread = threading.Thread(target=silent_agent, args=(listener,), daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            with pytest.raises(AgentUnavailable):
                AgentClient(path, timeout=0.3).exec(["sleep", "infinity"])
            assert time.monotonic() - started < 5
        finally:
            release.set()
            thread.join()
    assert requests[0] is not None and requests[0]["timeout_s"] == 0.2


# -- files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "expected"), [(0o4755, "755"), (0o2755, "755"), (0o6777, "777"),
                                                 (0o7755, "1755")], ids=["4755", "2755", "6777", "7755"])
def test_write_file_drops_setuid_and_setgid(sandbox: Sandbox, mode: int, expected: str) -> None:
    for content in (b"", BINARY):
        sandbox.client().write_file("/root/tool", content, mode=mode)
        assert guest_mode(sandbox, "/root/tool") == expected, len(content)


def test_write_file_over_a_setuid_file_drops_the_bits(sandbox: Sandbox) -> None:
    client = sandbox.client()
    assert client.exec(["sh", "-c", "printf x > /root/tool && chmod 6755 /root/tool"])["exit_code"] == 0
    assert guest_mode(sandbox, "/root/tool") == "6755"
    client.write_file("/root/tool", BINARY, mode=0o4755)
    assert guest_mode(sandbox, "/root/tool") == "755"
    assert client.read_file("/root/tool") == BINARY


def test_read_file_over_max_file_is_too_large(sandbox: Sandbox) -> None:
    client = sandbox.client()
    assert client.exec(["sh", "-c", f"head -c {MAX_FILE} /dev/zero > /root/big"])["exit_code"] == 0
    assert len(client.read_file("/root/big")) == MAX_FILE
    assert client.exec(["sh", "-c", "printf x >> /root/big"])["exit_code"] == 0
    with pytest.raises(GuestError) as error:
        client.read_file("/root/big")
    assert error.value.code == "too_large" and str(MAX_FILE) in error.value.message


def test_write_file_over_max_file_is_too_large() -> None:
    content = b"\0" * (MAX_FILE + 1)
    with pytest.raises(GuestError) as agent_error:  # the agent refuses it before looking at the path
        write_file({"path": "/nonexistent/x", "content_b64": base64.b64encode(content).decode()})
    with pytest.raises(GuestError) as client_error:  # and the client does not even send it
        AgentClient("/nonexistent/vsock.sock").write_file("/root/x", content)
    assert (agent_error.value.code, client_error.value.code) == ("too_large", "too_large")

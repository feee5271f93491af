"""VM sandboxes with real bubblewrap isolation and the guest agent over the vsock-style socket."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from envvars.envfile import render
from envvars_server.sandbox import (
    AgentUnavailable,
    GuestError,
    Sandbox,
)
from envvars_server.sandbox.agent import LOGIN_DEFAULTS
from envvars_server.sandbox.protocol import (
    AGENT_PORT,
    MAX_FRAME,
    ProtocolError,
    connect_unix,
    recv_frame,
    recv_line,
    send_frame,
)
from tests.conftest import CANARY

TRICKY_ENV = {
    "PLAIN": "value",
    "SPACES": "  leading and trailing  ",
    "QUOTES": "it's \"quoted\" '' \"\"",
    "DOLLAR": "$HOME ${PATH} $(id) `id`",
    "HASH": "a # not a comment",
    "BACKSLASH": "C:\\dir\\n\\",
    "EQUALS": "a=b=c",
    "UNICODE": "日本語 é 🚀",
    "EMPTY": "",
    "TAB": "\tx\t",
    "PATH": "/custom/bin:/usr/bin:/bin",
}


def env_of(vm: Sandbox, command: list[str] | None = None, **kwargs: object) -> dict[str, str]:
    result = vm.client().exec(command or ["env", "-0"], **kwargs)  # type: ignore[arg-type]
    assert result["exit_code"] == 0, result["stderr"]
    return dict(entry.split("=", 1) for entry in result["stdout"].split("\0") if entry)


# -- environment -----------------------------------------------------------------------------------

def test_exec_sees_exactly_what_a_login_reads_from_etc_environment(sandbox: Sandbox) -> None:
    sandbox.client().write_file("/etc/environment", render(TRICKY_ENV | {"LONG": "x" * 8192}).encode())
    # The real pam_env: a value ends at `#`, a line over its limit is skipped; the rest intact.
    assert env_of(sandbox) == LOGIN_DEFAULTS | TRICKY_ENV | {"HASH": "a "}


def test_exec_without_etc_environment_sees_login_defaults_only(sandbox: Sandbox) -> None:
    assert env_of(sandbox) == LOGIN_DEFAULTS


def test_exec_env_overrides_etc_environment(sandbox: Sandbox) -> None:
    sandbox.client().write_file("/etc/environment", render({"A": "file", "B": "file"}).encode())
    assert env_of(sandbox, env={"B": "request", "C": "request"}) == LOGIN_DEFAULTS | {
        "A": "file", "B": "request", "C": "request",
    }


def test_shell_sees_no_host_environment(sandbox: Sandbox) -> None:
    sandbox.client().write_file("/etc/environment", render({"A": "1"}).encode())
    result = sandbox.client().exec(["sh", "-c", "env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline"])
    assert result["exit_code"] == 0
    assert "A=1" in result["stdout"]
    assert CANARY not in result["stdout"]
    assert str(sandbox.vm_dir) not in result["stdout"]


def test_cat_etc_environment_is_the_rendered_file(sandbox: Sandbox) -> None:
    sandbox.client().write_file("/etc/environment", render(TRICKY_ENV).encode())
    result = sandbox.client().exec(["cat", "/etc/environment"])
    assert result == {"exit_code": 0, "stdout": render(TRICKY_ENV), "stderr": ""}


# -- files -----------------------------------------------------------------------------------------

def test_read_file_returns_written_bytes_and_mode(sandbox: Sandbox) -> None:
    content = bytes(range(256)) * 64
    sandbox.client().write_file("/root/data/blob.bin", content, mode=0o640, create_dirs=True)
    assert sandbox.client().read_file("/root/data/blob.bin") == content
    assert sandbox.client().exec(["stat", "-c", "%a", "/root/data/blob.bin"])["stdout"] == "640\n"
    assert (sandbox.root / "root/data/blob.bin").read_bytes() == content
    assert os.listdir(sandbox.root / "root/data") == ["blob.bin"]  # no temporary left behind


def test_write_file_replaces_existing_file(sandbox: Sandbox) -> None:
    client = sandbox.client()
    client.write_file("/etc/environment", b"A=1\n")
    client.write_file("/etc/environment", b"B=2\n", mode=0o600)
    assert client.read_file("/etc/environment") == b"B=2\n"
    assert (sandbox.root / "etc/environment").stat().st_mode & 0o7777 == 0o600


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../../etc/passwd", "bad_path"),
        ("etc/passwd", "bad_path"),
        ("/tmp/../../etc/passwd", "bad_path"),
        ("/usr/lib/os-release", "bad_path"),
        ("/proc/self/environ", "bad_path"),
        ("/opt/envvars-agent/envvars/envfile.py", "bad_path"),
        ("/nonexistent", "not_found"),
        ("/etc", "is_directory"),
    ],
)
def test_read_file_refusals(sandbox: Sandbox, path: str, code: str) -> None:
    with pytest.raises(GuestError) as error:
        sandbox.client().read_file(path)
    assert error.value.code == code


def test_write_file_refusals(sandbox: Sandbox) -> None:
    client = sandbox.client()
    for path, code in [("../../tmp/x", "bad_path"), ("/tmp/../x", "bad_path"), ("/usr/x", "bad_path"),
                       ("/dev/null", "bad_path"), ("/no/such/dir/x", "not_found"), ("/tmp", "is_directory")]:
        with pytest.raises(GuestError) as error:
            client.write_file(path, b"x")
        assert error.value.code == code, path


@pytest.mark.parametrize("target", ["/usr/lib", "../usr", "/proc/self", "/opt/envvars-agent", "/dev"])
def test_symlink_out_of_the_vm_root_is_bad_path(sandbox: Sandbox, target: str) -> None:
    (sandbox.root / "tmp/link").symlink_to(target)
    with pytest.raises(GuestError) as read_error:
        sandbox.client().read_file("/tmp/link/os-release")
    with pytest.raises(GuestError) as write_error:
        sandbox.client().write_file("/tmp/link/planted", b"x")
    assert (read_error.value.code, write_error.value.code) == ("bad_path", "bad_path")


def test_symlink_to_a_host_path_stays_inside_the_vm(sandbox: Sandbox, tmp_path: Path) -> None:
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("host only")
    (sandbox.root / "tmp/hostlink").symlink_to(host_file)
    with pytest.raises(GuestError) as error:
        sandbox.client().read_file("/tmp/hostlink")
    assert error.value.code == "not_found"
    sandbox.client().write_file("/tmp/hostlink", b"guest data", create_dirs=True)
    assert host_file.read_text() == "host only"
    assert (sandbox.root / str(host_file).lstrip("/")).read_bytes() == b"guest data"


# -- isolation -------------------------------------------------------------------------------------

def test_guest_sees_only_its_root_and_read_only_system_dirs(sandbox: Sandbox) -> None:
    listing = set(sandbox.client().exec(["ls", "-A", "/"])["stdout"].split())
    assert listing == {entry.name for entry in sandbox.root.iterdir()}
    assert {"etc", "root", "tmp", "usr", "proc", "dev", "opt"} <= listing
    for host_path in (str(sandbox.vm_dir), str(Path(__file__).resolve().parent), "/work"):
        assert sandbox.client().exec(["test", "-e", host_path])["exit_code"] == 1, host_path
    touch = sandbox.client().exec(["touch", "/usr/planted"])
    assert touch["exit_code"] != 0 and "Read-only file system" in touch["stderr"]
    assert not Path("/usr/planted").exists()


def test_guest_is_root_in_its_own_namespaces(sandbox: Sandbox) -> None:
    result = sandbox.client().exec(["sh", "-c", "id -u; hostname; cat /proc/net/dev | wc -l; echo $$"])
    uid, hostname, net_lines, pid = result["stdout"].split()
    assert (uid, hostname) == ("0", "vm")
    assert int(net_lines) == 3  # two header lines and loopback: no host network
    assert int(pid) < 100  # its own pid namespace


def test_agent_refuses_other_vsock_ports(sandbox: Sandbox) -> None:
    with connect_unix(sandbox.socket_path, 5) as sock:
        sock.sendall(b"CONNECT 1234\n")
        assert sock.recv(64) == b""
    with connect_unix(sandbox.socket_path, 5) as sock:
        sock.sendall(f"CONNECT {AGENT_PORT}\n".encode())
        assert recv_line(sock).startswith(b"OK ")
        send_frame(sock, {"op": "Reboot"})
        assert recv_frame(sock) == {"ok": False, "code": "bad_request", "error": "unknown op 'Reboot'"}


# -- exec ------------------------------------------------------------------------------------------

def test_exec_exit_codes_stdin_and_working_dir(sandbox: Sandbox) -> None:
    client = sandbox.client()
    assert client.exec(["sh", "-c", "exit 3"])["exit_code"] == 3
    assert client.exec(["cat"], stdin=b"piped")["stdout"] == "piped"
    assert client.exec(["pwd"])["stdout"] == "/root\n"
    assert client.exec(["pwd"], working_dir="/tmp")["stdout"] == "/tmp\n"
    missing = client.exec(["no-such-program"])
    assert missing["exit_code"] == 127 and "no-such-program" in missing["stderr"]
    assert client.exec(["/etc/passwd"])["exit_code"] == 126


def test_exec_timeout_kills_the_command(sandbox: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(GuestError) as error:
        sandbox.client().exec(["sh", "-c", "sleep 30; echo late"], timeout_s=0.5)
    assert error.value.code == "timeout"
    assert time.monotonic() - started < 5


# -- lifecycle -------------------------------------------------------------------------------------

def test_pause_freezes_the_vm_and_resume_thaws_it(sandbox: Sandbox) -> None:
    sandbox.pause()
    with pytest.raises(AgentUnavailable):
        sandbox.client().ping(timeout=0.3)
    assert sandbox.is_alive()
    sandbox.resume()
    sandbox.client().ping(timeout=5)


def test_stop_kills_every_process_of_the_vm(sandbox: Sandbox) -> None:
    sandbox.client().exec(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
    pids = sandbox.pids()
    assert len(pids) >= 3  # bwrap's init, the agent, the sleeper
    sandbox.stop()
    assert not sandbox.is_alive()
    assert not sandbox.socket_path.exists()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    with pytest.raises(AgentUnavailable):
        sandbox.client().ping(timeout=1)


def test_stop_of_a_paused_vm_kills_it(sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    sandbox.pause()
    sandbox.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_sandboxes_outlive_the_threads_that_booted_them(isolation: None, tmp_path: Path) -> None:
    vms = [Sandbox(tmp_path / f"vm{i}") for i in range(3)]
    for vm in vms:
        vm.create_root()
    threads = [threading.Thread(target=vm.boot) for vm in vms]  # like a server's short-lived workers
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.3)
    try:
        for vm in vms:
            assert vm.is_alive()
            vm.client().ping(timeout=5)
    finally:
        for vm in vms:
            vm.destroy()


def test_reboot_keeps_the_root_without_reinjection(sandbox: Sandbox) -> None:
    sandbox.client().write_file("/etc/environment", render({"KEPT": "yes"}).encode())
    sandbox.stop()
    sandbox.boot()
    assert env_of(sandbox)["KEPT"] == "yes"


def test_snapshot_and_copy_root_preserve_files_modes_and_symlinks(sandbox: Sandbox, tmp_path: Path) -> None:
    client = sandbox.client()
    client.write_file("/etc/environment", render({"A": "1"}).encode())
    client.write_file("/root/bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755, create_dirs=True)
    client.write_file("/root/private", b"secret", mode=0o600)
    assert client.exec(["ln", "-s", "/root/bin/tool", "/root/link"])["exit_code"] == 0
    sandbox.pause()
    sandbox.snapshot(tmp_path / "commit")
    sandbox.resume()

    copy = Sandbox(tmp_path / "copy")
    copy.create_root(tmp_path / "commit")
    copy.boot()
    try:
        assert copy.client().read_file("/etc/environment") == render({"A": "1"}).encode()
        script = "stat -c '%a %n' /root/bin/tool /root/private; readlink /root/link; /root/link"
        result = copy.client().exec(["sh", "-c", script])
        assert result["stdout"] == "755 /root/bin/tool\n600 /root/private\n/root/bin/tool\ntool\n"
    finally:
        copy.destroy()
    assert not copy.vm_dir.exists()


def test_fresh_root_has_no_etc_environment(isolation: None, tmp_path: Path) -> None:
    vm = Sandbox(tmp_path / "vm")
    vm.create_root()
    try:
        assert not (vm.root / "etc/environment").exists()
        with pytest.raises(FileExistsError):
            vm.create_root()
    finally:
        vm.destroy()


def test_boot_works_with_a_vm_dir_longer_than_a_socket_path(isolation: None, tmp_path: Path) -> None:
    vm = Sandbox(tmp_path / ("d" * 100) / "vm")
    vm.create_root()
    vm.boot()
    try:
        assert len(str(vm.socket_path)) > 108
        vm.client().ping()
    finally:
        vm.destroy()


def test_boot_is_fast(isolation: None, tmp_path: Path) -> None:
    vm = Sandbox(tmp_path / "vm")
    vm.create_root()
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        vm.boot()
        vm.client().write_file("/etc/environment", render({"A": "1"}).encode())
        durations.append(time.perf_counter() - started)
        vm.stop()
    assert statistics.median(durations) < 1.0, durations


# -- framing ---------------------------------------------------------------------------------------

def test_frames_round_trip_and_refuse_oversize() -> None:
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, {"op": "Ping", "text": "é🚀"})
        assert recv_frame(right) == {"op": "Ping", "text": "é🚀"}
        left.sendall((MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(ProtocolError, match="exceeds"):
            recv_frame(right)
        left.close()
        assert recv_frame(right) is None

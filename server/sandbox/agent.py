"""The guest agent: serves the vsock protocol from inside a VM sandbox (stdlib only).

It plays both the VM's vsock device (answering `CONNECT` for AGENT_PORT, closing the
connection for any other port, as Firecracker does when no guest listener owns it) and the
agent behind it. Run it with `--listen-fd N` (a listening Unix socket inherited from the host)
or `--socket PATH` (it binds PATH itself).

File operations are confined to the VM's own root filesystem: every mount point other than `/`
(the read-only system directories, /proc, /dev) is outside it, and so is any path that resolves
there through a symlink. The one exception is a memory-only directory the host gives the VM
(`--own-mount DIR`, a tmpfs: where a workload's env file lives in memory only): it is part of the VM
while it is that tmpfs alone, and a path in it is refused once the guest unmounted it (the path
would then reach the VM's disk) or mounted anything over or under it. Exec gets the login
environment of the VM: defaults, then what the real pam_env module reads from `/etc/environment`
(a value cut at `#`, an over-long line
skipped, as a login sees them), then the workload's process environment if it has one
(`PROCESS_ENV_FILE`, `KEY=VALUE` entries each ended by NUL, as in `/proc/<pid>/environ`: what a
container's processes inherit, every value intact), then the request's `env`; nothing of the
agent's own.

The agent holds at most MAX_FILE bytes of a file and MAX_EXEC_OUTPUT bytes of a command's
output (the limits are in the protocol's docstring); a command beyond its output limit or its
timeout is killed with its process group.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from envvars_server.sandbox import pam
from envvars_server.sandbox.protocol import (
    AGENT_PORT,
    DEFAULT_EXEC_TIMEOUT_S,
    FIRST_HOST_PORT,
    MAX_EXEC_OUTPUT,
    MAX_EXEC_TIMEOUT_S,
    MAX_FILE,
    GuestError,
    ProtocolError,
    recv_frame,
    recv_line,
    send_frame,
)

ENV_FILE = "/etc/environment"
PROCESS_ENV_FILE = "/run/envvars/environ"
PAM_CONFDIR = "/opt/envvars-pam"  # holds pam.SERVICE, placed read-only by the host
LOGIN_DEFAULTS = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "SHELL": "/bin/sh",
    "USER": "root",
    "LOGNAME": "root",
}
HANDSHAKE_TIMEOUT_S = 5.0
SETID_BITS = stat.S_ISUID | stat.S_ISGID  # never written: a file the host asked for is no setuid program
PIPE_CHUNK = 64 * 1024

# next() on an itertools.count is atomic in CPython: no lock needed across connection threads.
_host_ports = itertools.count(FIRST_HOST_PORT)
_temp_ids = itertools.count()


def login_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a login shell in this VM gets, plus `overrides`."""
    env = dict(LOGIN_DEFAULTS)
    try:
        env.update(pam.login_variables(PAM_CONFDIR))
    except pam.PamUnavailable as exc:
        raise GuestError("io_error", f"the VM's login environment cannot be read: {exc}") from None
    env.update(process_env())
    env.update(overrides or {})
    return env


def process_env() -> dict[str, str]:
    """The workload's process environment (`PROCESS_ENV_FILE`), or nothing when it has none."""
    try:  # non-blocking and a regular file only: a guest's FIFO or device there cannot hang a login
        fd = os.open(PROCESS_ENV_FILE, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise GuestError("io_error", f"{PROCESS_ENV_FILE} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GuestError("io_error", f"{PROCESS_ENV_FILE} is not a regular file")
        raw = file.read(MAX_FILE)
    entries = (entry.decode("utf-8", "replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, equals, value in entries if key and equals}


# -- paths -----------------------------------------------------------------------------------------

_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")
OWN_MOUNTS: set[str] = set()  # the VM's memory-only directories (`--own-mount`), set once at start


def foreign_mounts() -> set[str]:
    """Every mount point but `/` and the VM's own memory-only directories: what is not part of the VM."""
    points, own = _mounts()
    return points - {"/"} - own


def _mounts() -> tuple[set[str], set[str]]:
    """Every mount point, and those of the VM's memory-only directories that are intact."""
    # Read per request: the guest's root may mount things in the namespace it shares with us.
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        mounts = [_mount_of(line) for line in file]
    points = [point for point, _ in mounts]
    # An own directory counts as the VM's only while it is the one tmpfs the host mounted there: once the guest
    # mounted anything over or under it, it is foreign; once it unmounted it, `resolve` refuses the path.
    own = {point for point, kind in mounts if point in OWN_MOUNTS and kind == "tmpfs" and points.count(point) == 1
           and not any(other != point and other.startswith(point.rstrip("/") + "/") for other in points)}
    return set(points), own


def _mount_of(line: str) -> tuple[str, str]:
    """A mountinfo line's mount point and filesystem type."""
    fields = line.split()
    point = _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[4])
    kind = fields[fields.index("-", 6) + 1] if "-" in fields[6:] else ""
    return point, kind


def resolve(path: Any) -> str:
    """The real location of a request path inside the VM root, or GuestError bad_path."""
    if not isinstance(path, str) or not path:
        raise GuestError("bad_request", "path must be a non-empty string")
    if not path.startswith("/") or "\x00" in path:
        raise GuestError("bad_path", f"path {path!r} is not absolute")
    if ".." in path.split("/"):
        raise GuestError("bad_path", f"path {path!r} has a '..' component")
    real = os.path.realpath(path)
    points, own = _mounts()
    for mount in OWN_MOUNTS - own:  # unmounted (or covered) by the guest: the path could reach the VM's disk
        if any(where == mount or where.startswith(mount.rstrip("/") + "/") for where in (real, os.path.normpath(path))):
            raise GuestError("bad_path", f"path {path!r} is in the VM's memory-only {mount}, which is not intact")
    for mount in points - {"/"} - own:
        if real == mount or real.startswith(mount.rstrip("/") + "/"):
            via = "" if real == os.path.normpath(path) else f" (it resolves to {real!r})"
            raise GuestError("bad_path", f"path {path!r} is outside the VM's root filesystem{via}")
    return real


# -- requests --------------------------------------------------------------------------------------

def _field(request: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = request.get(name, default)
    if value is ...:
        raise GuestError("bad_request", f"missing field {name!r}")
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise GuestError("bad_request", f"field {name!r} has the wrong type")
    return value


def _b64(request: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(_field(request, name, str, ""), validate=True)
    except binascii.Error:
        raise GuestError("bad_request", f"field {name!r} is not valid base64") from None


def ping(request: dict[str, Any]) -> dict[str, Any]:
    """Answer that the agent is up."""
    return {}


def read_file(request: dict[str, Any]) -> dict[str, Any]:
    """Return a regular file's bytes."""
    path = _field(request, "path", str)
    real = resolve(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise GuestError("not_found", f"{path} does not exist") from None
    if stat.S_ISDIR(info.st_mode):
        raise GuestError("is_directory", f"{path} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise GuestError("bad_path", f"{path} is not a regular file")
    too_large = GuestError("too_large", f"{path} is larger than {MAX_FILE} bytes")
    if info.st_size > MAX_FILE:
        raise too_large
    with open(real, "rb") as file:
        content = file.read(MAX_FILE + 1)  # bounded: the guest may be growing the file meanwhile
    if len(content) > MAX_FILE:
        raise too_large
    return {"content_b64": base64.b64encode(content).decode()}


def write_file(request: dict[str, Any]) -> dict[str, Any]:
    """Atomically replace a file: write a temporary file, set its mode minus setuid/setgid, rename it."""
    path = _field(request, "path", str)
    mode = _field(request, "mode", int, 0o644)
    create_dirs = _field(request, "create_dirs", bool, False)
    content = _b64(request, "content_b64")
    if not 0 <= mode <= 0o7777:
        raise GuestError("bad_request", f"mode {mode:#o} is not a permission mode")
    if len(content) > MAX_FILE:
        raise GuestError("too_large", f"content for {path} is larger than {MAX_FILE} bytes")
    real = resolve(path)
    if os.path.isdir(real):
        raise GuestError("is_directory", f"{path} is a directory")
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        if not create_dirs:
            missing = os.path.dirname(path)
            raise GuestError("not_found", f"directory {missing} does not exist (set create_dirs to make it)")
        os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, f".envvars-agent-{os.getpid()}-{next(_temp_ids)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            os.fchmod(file.fileno(), mode & ~SETID_BITS)  # a new inode: nothing of the old file's mode
        os.replace(temp, real)
    except BaseException:
        os.unlink(temp)
        raise
    return {}


def _communicate(process: subprocess.Popen[bytes], stdin: bytes, timeout: float, name: str) -> tuple[bytes, bytes]:
    """Feed `stdin` and collect stdout and stderr; GuestError past `timeout` or MAX_EXEC_OUTPUT."""
    assert process.stdin and process.stdout and process.stderr
    deadline = time.monotonic() + timeout
    timed_out = GuestError("timeout", f"{name} ran longer than {timeout} s and was killed")
    stdin_fd = process.stdin.fileno()
    outputs = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    total = 0
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(stdin_fd, False)
            selector.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out
            for key, _ in selector.select(remaining):
                if key.fd == stdin_fd:
                    try:
                        pending = pending[os.write(stdin_fd, pending[:PIPE_CHUNK]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the command stopped reading: the rest of stdin is moot
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(stdin_fd)
                        process.stdin.close()
                    continue
                # Never read past the limit: memory stays bounded however fast the command writes.
                chunk = os.read(key.fd, min(PIPE_CHUNK, MAX_EXEC_OUTPUT + 1 - total))
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                outputs[key.fd] += chunk
                total += len(chunk)
                if total > MAX_EXEC_OUTPUT:
                    raise GuestError("too_large", f"the output of {name} exceeded {MAX_EXEC_OUTPUT} bytes "
                                                  "(stdout and stderr together), so it was killed")
    try:
        process.wait(max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        raise timed_out from None
    return bytes(outputs[process.stdout.fileno()]), bytes(outputs[process.stderr.fileno()])


def exec_command(request: dict[str, Any]) -> dict[str, Any]:
    """Run a command with the login environment; 127/126 for a missing/non-executable program."""
    command = _field(request, "command", list)
    if not command or not all(isinstance(arg, str) and "\x00" not in arg for arg in command):
        raise GuestError("bad_request", "command must be a non-empty list of strings")
    env = _field(request, "env", dict, None)
    if env is not None and not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\x00" not in k + v
        for k, v in env.items()
    ):
        raise GuestError("bad_request", "env must map variable names to strings")
    working_dir = _field(request, "working_dir", str, LOGIN_DEFAULTS["HOME"])
    timeout = _field(request, "timeout_s", (int, float), None) or DEFAULT_EXEC_TIMEOUT_S
    if not 0 < timeout <= MAX_EXEC_TIMEOUT_S:  # also refuses NaN, which JSON parsing lets through
        raise GuestError("bad_request", f"timeout_s must be from 0 to {MAX_EXEC_TIMEOUT_S} s "
                                        f"(0 or absent: {DEFAULT_EXEC_TIMEOUT_S} s)")
    stdin = _b64(request, "stdin_b64")
    if not os.path.isdir(working_dir):
        raise GuestError("bad_request", f"working_dir {working_dir} is not a directory")
    try:
        process = subprocess.Popen(
            command, cwd=working_dir, env=login_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,  # its own group, so a timeout kills it all
        )
    except (FileNotFoundError, PermissionError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"envvars-agent: {command[0]}: {exc.strerror}\n".encode()
        return {"exit_code": code, "stdout_b64": "", "stderr_b64": base64.b64encode(message).decode()}
    with process:  # on leaving: its pipes closed, and it is waited for
        try:
            stdout, stderr = _communicate(process, stdin, timeout, command[0])
        except BaseException:  # over a limit, or failed: kill it all, so the wait cannot hang
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
    return {
        "exit_code": process.returncode if process.returncode >= 0 else 128 - process.returncode,
        "stdout_b64": base64.b64encode(stdout).decode(),
        "stderr_b64": base64.b64encode(stderr).decode(),
    }


HANDLERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "Ping": ping, "ReadFile": read_file, "WriteFile": write_file, "Exec": exec_command,
}


def dispatch(request: dict[str, Any]) -> dict[str, Any]:
    """The response frame for one request frame; each one but Ping is logged (never a content or a command)."""
    response = _handle(request)
    if request.get("op") != "Ping":
        mode = request.get("mode")
        print(f"envvars-agent: {str(request.get('op'))[:32]} {str(request.get('path', ''))[:256]!r}"
              f"{f' mode {mode:o}' if isinstance(mode, int) else ''} -> {response.get('code', 'ok')}",
              file=sys.stderr, flush=True)
    return response


def _handle(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    handler = HANDLERS.get(op) if isinstance(op, str) else None
    try:
        if handler is None:
            raise GuestError("bad_request", f"unknown op {op!r}")
        return {"ok": True, **handler(request)}
    except GuestError as exc:
        return {"ok": False, "code": exc.code, "error": exc.message}
    except ValueError as exc:  # e.g. a path or argument the OS cannot encode
        return {"ok": False, "code": "bad_request", "error": str(exc)}
    except OSError as exc:
        where = f" ({request['path']})" if isinstance(request.get("path"), str) else ""
        return {"ok": False, "code": "io_error", "error": f"{exc.strerror or exc}{where}"}


# -- connections -----------------------------------------------------------------------------------

def serve_connection(conn: socket.socket) -> None:
    """Answer the vsock handshake, then requests until the host hangs up."""
    with conn:
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT_S)
            words = recv_line(conn).split()
            if len(words) != 2 or words[0] != b"CONNECT" or words[1] != str(AGENT_PORT).encode():
                return  # no listener on that port: Firecracker closes the connection
            conn.sendall(f"OK {next(_host_ports)}\n".encode())
            conn.settimeout(None)
            while (request := recv_frame(conn)) is not None:
                send_frame(conn, dispatch(request))
        except (OSError, ProtocolError) as exc:
            print(f"envvars-agent: connection dropped: {exc}", file=sys.stderr)


def serve(listener: socket.socket) -> None:
    """Accept connections forever, each served by its own thread."""
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Command line: `--listen-fd N` (an inherited listening socket) or `--socket PATH`, then `--own-mount DIR`
    for each memory-only directory of the VM."""
    args = sys.argv[1:] if argv is None else argv  # no argparse: it would slow every VM boot
    own = args[2:]
    if (len(args) < 2 or args[0] not in ("--listen-fd", "--socket") or len(own) % 2
            or any(flag != "--own-mount" or not path.startswith("/") or path == "/"
                   for flag, path in zip(own[::2], own[1::2], strict=True))):
        print("usage: envvars-agent (--listen-fd N | --socket PATH) [--own-mount DIR]...", file=sys.stderr)
        return 2
    OWN_MOUNTS.update(own[1::2])
    if args[0] == "--listen-fd":
        listener = socket.socket(fileno=int(args[1]))
    else:
        if os.path.exists(args[1]):
            os.unlink(args[1])
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(args[1])
        listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())

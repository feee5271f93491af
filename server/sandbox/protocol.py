"""The wire protocol between the host and a VM's guest agent (stdlib only; also shipped into guests).

Transport, as Firecracker's host-initiated vsock: the host connects to the VM's vsock Unix
socket and sends `CONNECT <port>\\n`. If a guest listener owns that port, the device answers
`OK <host_port>\\n` (a fresh host-side port number, as Firecracker does) and the stream then
belongs to that listener; otherwise it closes the connection. The agent listens on AGENT_PORT.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object;
at most MAX_FRAME bytes. Bytes travel base64-encoded in fields named `*_b64`. Each request
frame `{"op": <name>, ...}` gets one response frame, `{"ok": true, ...result}` or
`{"ok": false, "code": <ERROR_CODES key>, "error": <message>}`; a connection may carry any
number of requests in turn.

    Ping      {}                                                -> {}
    ReadFile  {path}                                            -> {content_b64}
    WriteFile {path, content_b64, mode, create_dirs}            -> {}
    Exec      {command, working_dir?, env?, timeout_s?, stdin_b64?}
                                                    -> {exit_code, stdout_b64, stderr_b64}

Paths are absolute paths inside the VM's own root filesystem. Exec runs `command` (an argv
list, no shell) with the VM's login environment; a missing program exits 127 and a
non-executable one 126, as in a shell.

Limits, so that neither the agent nor the host ever holds an unbounded amount of data:
- ReadFile and WriteFile carry at most MAX_FILE bytes of content (too_large beyond).
- WriteFile drops the setuid and setgid bits of `mode` (0o4755 is written as 0o755), also when
  it replaces an existing file; it never refuses a mode for them.
- Exec reads stdout and stderr as they come; once together they exceed MAX_EXEC_OUTPUT bytes it
  kills the command's process group and answers too_large. (As the server's JSON, each output
  byte takes at most 6 bytes, a NUL being `\\u0000`: at most 6 MiB.)
- Exec's `timeout_s`: absent or 0 means DEFAULT_EXEC_TIMEOUT_S; above MAX_EXEC_TIMEOUT_S, or
  negative, it is refused (bad_request). Past it the process group is killed (timeout). The
  host waits for the answer that long plus its own margin, never forever.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
from typing import Any, TypedDict

AGENT_PORT = 52
MAX_FRAME = 32 * 1024 * 1024
MAX_FILE = 16 * 1024 * 1024  # file content per ReadFile/WriteFile; base64 makes it ~21.3 MiB of frame
MAX_EXEC_OUTPUT = 1024 * 1024  # stdout + stderr of one Exec
DEFAULT_EXEC_TIMEOUT_S = 60  # for an Exec whose timeout_s is absent or 0
MAX_EXEC_TIMEOUT_S = 600
HANDSHAKE_MAX = 64
FIRST_HOST_PORT = 1 << 30  # Firecracker numbers host-side ports of guest connections from here

ERROR_CODES = {
    "bad_request": "the request is malformed (unknown op, missing or mistyped field)",
    "bad_path": "the path is relative, has `..`, or resolves outside the VM's own root filesystem",
    "not_found": "the file, or the parent directory of a file to write, does not exist",
    "is_directory": "the path names a directory where a file is needed",
    "timeout": "the command ran longer than timeout_s (or DEFAULT_EXEC_TIMEOUT_S) and was killed",
    "too_large": "the file exceeds MAX_FILE bytes, or the command's output MAX_EXEC_OUTPUT (it was killed)",
    "io_error": "the guest's filesystem refused the operation",
}

_HEADER = struct.Struct(">I")
_OK_LINE = re.compile(rb"OK (\d+)\n")


class ProtocolError(ValueError):
    """A peer broke the framing or the handshake."""


class GuestError(Exception):
    """The agent refused a request; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentUnavailable(ConnectionError):
    """The agent did not answer: the VM is not booted, paused, dead, or too slow."""


class ExecResult(TypedDict):
    """A finished command: its exit code and its output decoded as UTF-8 (invalid bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one JSON object as a frame."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    sock.sendall(_HEADER.pack(len(body)) + body)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Receive one frame's JSON object, or None if the peer closed the connection between frames."""
    header = _recv_exactly(sock, _HEADER.size, eof_ok=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        message = json.loads(_recv_exactly(sock, length) or b"")
    except ValueError as exc:
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("frame does not hold a JSON object")
    return message


def _recv_exactly(sock: socket.socket, size: int, eof_ok: bool = False) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            if eof_ok and missing == size:
                return None
            raise ProtocolError("connection closed in the middle of a frame")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def recv_line(sock: socket.socket) -> bytes:
    """Read a handshake line byte by byte (so nothing after it is consumed), newline included."""
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte or len(line) >= HANDSHAKE_MAX:
            raise ProtocolError("bad or missing handshake line")
        line += byte
    return line


def connect_unix(path: str | os.PathLike[str], timeout: float | None) -> socket.socket:
    """Connect to a Unix socket, even one whose path exceeds the 108-byte sun_path limit."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        address = os.fspath(path)
        if len(os.fsencode(address)) < 100:
            sock.connect(address)
        else:  # reach it through a short /proc/self/fd path to its directory
            dir_fd = os.open(os.path.dirname(address) or ".", os.O_PATH)
            try:
                sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(address)}")
            finally:
                os.close(dir_fd)
    except BaseException:
        sock.close()
        raise
    return sock


class AgentClient:
    """Host side: one connection per call to the agent behind a VM's vsock socket."""

    def __init__(self, socket_path: str | os.PathLike[str], timeout: float = 30.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, op: str, fields: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send one request and return its result fields, raising GuestError on a refusal."""
        try:
            with connect_unix(self.socket_path, timeout) as sock:
                sock.sendall(f"CONNECT {AGENT_PORT}\n".encode())
                if not _OK_LINE.fullmatch(recv_line(sock)):
                    raise ProtocolError("the agent refused the vsock handshake")
                send_frame(sock, {"op": op, **fields})
                response = recv_frame(sock)
        except (OSError, ProtocolError) as exc:
            raise AgentUnavailable(f"guest agent at {self.socket_path} did not answer {op}: {exc}") from exc
        if response is None:
            raise AgentUnavailable(f"guest agent at {self.socket_path} closed the connection during {op}")
        if not response.pop("ok", False):
            raise GuestError(str(response.get("code", "io_error")), str(response.get("error", "no reason")))
        return response

    def ping(self, timeout: float | None = None) -> None:
        """Check that the agent answers (within `timeout` seconds)."""
        self.call("Ping", {}, self.timeout if timeout is None else timeout)

    def read_file(self, path: str) -> bytes:
        """The bytes of a regular file in the VM."""
        return base64.b64decode(self.call("ReadFile", {"path": path}, self.timeout)["content_b64"])

    def write_file(self, path: str, content: bytes, mode: int = 0o644, create_dirs: bool = False) -> None:
        """Atomically replace (or create) a file in the VM with `content` and `mode` minus setuid/setgid."""
        if len(content) > MAX_FILE:
            raise GuestError("too_large", f"content for {path} is larger than {MAX_FILE} bytes")
        fields = {"path": path, "content_b64": base64.b64encode(content).decode(), "mode": mode,
                  "create_dirs": create_dirs}
        self.call("WriteFile", fields, self.timeout)

    def exec(
        self,
        command: list[str],
        working_dir: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run `command` in the VM with its login environment (plus `env`) and wait at most `timeout_s`.

        None or 0 means DEFAULT_EXEC_TIMEOUT_S; the agent refuses more than MAX_EXEC_TIMEOUT_S.
        """
        timeout_s = timeout_s or DEFAULT_EXEC_TIMEOUT_S
        fields: dict[str, Any] = {"command": command, "timeout_s": timeout_s}
        if working_dir is not None:
            fields["working_dir"] = working_dir
        if env:
            fields["env"] = env
        if stdin:
            fields["stdin_b64"] = base64.b64encode(stdin).decode()
        # The agent enforces timeout_s; the socket's own limit only guards against a frozen VM.
        # Clamped (NaN-safe order) so it stays finite whatever the caller passed; the agent refuses those.
        wait = min(MAX_EXEC_TIMEOUT_S, max(timeout_s, 0))
        result = self.call("Exec", fields, wait + self.timeout)
        return {
            "exit_code": int(result["exit_code"]),
            "stdout": base64.b64decode(result["stdout_b64"]).decode(errors="replace"),
            "stderr": base64.b64decode(result["stderr_b64"]).decode(errors="replace"),
        }


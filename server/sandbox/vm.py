"""Host side of a VM sandbox: its root filesystem, and its guest agent confined by bubblewrap.

A VM lives in `vm_dir`: `root/` is its own writable root filesystem, `vsock.sock` the host end
of its vsock device, `agent.log` the agent's stderr; the guest agent image its VM siblings share
lives next to it (`.agent-image-<version>`). `boot()` runs the guest agent under `bwrap`
with `root/` at `/`; the host's /usr (and /bin, /lib… where they are real directories), the
Python runtime and the agent image read-only; a fresh /proc and /dev; and its own user (guest
root = the server's uid outside), pid, ipc, uts and network namespaces. The host creates the
listening socket and hands it over, and bwrap gets its arguments through a pipe and an empty
environment, so nothing of the host project or the server's environment is visible inside.
Sandboxes die with the server (`--die-with-parent`); a restarted server boots them again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import py_compile
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from envvars import envfile
from envvars_server.sandbox import agent, protocol
from envvars_server.sandbox.protocol import AgentClient, AgentUnavailable

GUEST_AGENT_DIR = "/opt/envvars-agent"
GUEST_PYTHON_DIR = "/opt/python"
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # bound or symlinked like the host's
# Host /etc entries that /usr depends on (Debian's /usr/bin/awk, which… link through alternatives).
SYSTEM_ETC = ("etc/alternatives", "etc/ld.so.cache")
ROOT_SKELETON = {"etc": 0o755, "root": 0o700, "home": 0o755, "tmp": 0o1777, "run": 0o755, "var": 0o755,
                 "var/tmp": 0o1777, "opt": 0o755, "usr": 0o755, "proc": 0o755, "dev": 0o755}
ROOT_FILES = {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n"}
# The guest image of the agent: its modules at their package paths, with empty package markers.
AGENT_IMAGE = {
    "envvars/__init__.py": None,
    "envvars/envfile.py": Path(envfile.__file__),
    "envvars_server/__init__.py": None,
    "envvars_server/sandbox/__init__.py": None,
    "envvars_server/sandbox/protocol.py": Path(protocol.__file__),
    "envvars_server/sandbox/agent.py": Path(agent.__file__),
}
AGENT_BOOTSTRAP = (f"import sys; sys.path.insert(0, {GUEST_AGENT_DIR!r}); "
                   "from envvars_server.sandbox.agent import main; sys.exit(main(sys.argv[1:]))")
NAMESPACE_FLAGS = ("--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--unshare-ipc",
                   "--unshare-uts", "--unshare-net", "--unshare-cgroup-try")

# PR_SET_PDEATHSIG (bwrap --die-with-parent) fires when the *thread* that forked exits, and
# server thread pools retire idle threads; so every sandbox is forked from this one thread,
# which lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")


class IsolationUnavailable(RuntimeError):
    """This host cannot run VM sandboxes; the message says what is missing and how to fix it."""


def _guest_python() -> tuple[list[str], str, str]:
    """bwrap arguments exposing the server's Python runtime, its interpreter and library dir inside."""
    base = Path(sys.base_prefix).resolve()
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if base == Path("/usr") or Path("/usr") in base.parents:
        return [], str(base / "bin" / name), str(base / "lib")
    guest = GUEST_PYTHON_DIR
    return ["--ro-bind", str(base), guest], f"{guest}/bin/{name}", f"{guest}/lib"


@functools.cache
def _agent_version() -> str:
    """A digest of the agent image's sources and bytecode format."""
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for name, source in AGENT_IMAGE.items():
        digest.update(name.encode() + b"\0" + (source.read_bytes() if source else b"") + b"\0")
    return digest.hexdigest()[:16]


def agent_image(parent: Path) -> Path:
    """The guest agent image in `parent`, written and byte-compiled once per agent version; VMs share it read-only."""
    image = parent / f".agent-image-{_agent_version()}"
    if image.is_dir():
        return image
    staging = Path(tempfile.mkdtemp(prefix=".agent-image-new-", dir=parent))
    for name, source in AGENT_IMAGE.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes() if source else b"")
        # Unchecked pycs: the guest neither recompiles (its image is read-only) nor stats sources.
        py_compile.compile(str(target), dfile=f"{GUEST_AGENT_DIR}/{name}", doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    staging.chmod(0o755)
    try:
        staging.rename(image)
    except OSError:  # a concurrent boot installed it first
        shutil.rmtree(staging)
    return image


def _copy_file(src: str, dst: str) -> None:
    """Copy a regular file with its mode; skip sockets, FIFOs, devices and files that vanished."""
    try:
        if stat.S_ISREG(os.lstat(src).st_mode):
            shutil.copy2(src, dst)
    except FileNotFoundError:
        pass


def copy_root(src: Path, dst: Path) -> None:
    """Copy a root filesystem, keeping modes and symlinks as they are (never following them)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, symlinks=True, copy_function=_copy_file)


class Sandbox:
    """One VM: its root filesystem under `vm_dir` and, while booted, its confined guest agent."""

    def __init__(self, vm_dir: Path):
        self.vm_dir = Path(vm_dir)
        self.root = self.vm_dir / "root"
        self.socket_path = self.vm_dir / "vsock.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._pid_ns: str | None = None

    # -- filesystem -------------------------------------------------------------------------

    def create_root(self, from_root: Path | None = None) -> None:
        """Make the VM's root: a fresh skeleton (no /etc/environment), or a copy of another root."""
        if self.root.exists():
            raise FileExistsError(f"VM root {self.root} already exists")
        staging = self.vm_dir / ".root-new"  # renamed into place when complete
        shutil.rmtree(staging, ignore_errors=True)
        if from_root is not None:
            copy_root(Path(from_root), staging)
        else:
            for name, mode in ROOT_SKELETON.items():
                (staging / name).mkdir(parents=True)
                (staging / name).chmod(mode)
            for name, text in ROOT_FILES.items():
                (staging / name).write_text(text)
        staging.rename(self.root)

    def snapshot_root(self, dest: Path) -> None:
        """Copy the root to `dest` (for a commit); consistent while paused, best effort while running."""
        copy_root(self.root, Path(dest))

    def _prepare_root(self) -> list[str]:
        """Restore the system-dir symlinks a guest may have removed; bwrap binds for the rest."""
        binds = []
        for name in SYSTEM_DIRS:
            host, guest = Path("/", name), self.root / name
            if host.is_symlink():
                if not guest.is_symlink() and not guest.exists():
                    guest.symlink_to(os.readlink(host))
            elif host.is_dir():
                binds += ["--ro-bind", str(host), f"/{name}"]
        for name in SYSTEM_ETC:
            if Path("/", name).exists():
                binds += ["--ro-bind", f"/{name}", f"/{name}"]
        return binds

    # -- lifecycle --------------------------------------------------------------------------

    def boot(self, timeout: float = 10.0) -> None:
        """Start the guest agent in its sandbox and wait until it answers Ping."""
        if self.is_alive():
            return
        self.stop()  # reap a sandbox that died on its own
        if not self.root.is_dir():
            raise FileNotFoundError(f"VM root {self.root} does not exist; call create_root() first")
        deadline = time.monotonic() + timeout
        system_binds = self._prepare_root()
        self.vm_dir.mkdir(parents=True, exist_ok=True)
        image = agent_image(self.vm_dir.parent)
        python_binds, python, python_lib = _guest_python()
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        info_read, info_write = os.pipe()
        args_read, args_write = os.pipe()
        try:
            _bind_unix(listener, self.socket_path)
            listener.listen(64)
            args = [
                "--bind", str(self.root), "/", "--ro-bind", "/usr", "/usr", *system_binds, *python_binds,
                "--ro-bind", str(image), GUEST_AGENT_DIR, "--proc", "/proc", "--dev", "/dev",
                *NAMESPACE_FLAGS, "--hostname", self.vm_dir.name[:63] or "vm", "--die-with-parent",
                "--new-session", "--clearenv", "--setenv", "LD_LIBRARY_PATH", python_lib, "--chdir", "/",
                "--info-fd", str(info_write),
            ]
            command = [python, "-I", "-S", "-c", AGENT_BOOTSTRAP, "--listen-fd", str(listener.fileno())]
            # Arguments go through --args and the environment is empty: bwrap stays the VM's pid 1,
            # and the guest could otherwise read host paths and the server's environment in /proc/1.
            os.write(args_write, b"".join(os.fsencode(arg) + b"\0" for arg in args))
            os.close(args_write)
            args_write = -1
            with (self.vm_dir / "agent.log").open("ab") as log:
                self._process = _spawner.submit(
                    subprocess.Popen, [_bwrap(), "--args", str(args_read), "--", *command], env={},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(listener.fileno(), info_write, args_read), start_new_session=True,
                ).result()
            os.close(info_write)
            info_write = -1
            self._init_pid = _read_child_pid(info_read, deadline)
            self._pid_ns = os.readlink(f"/proc/{self._init_pid}/ns/pid")
        except Exception as exc:
            raise self._failed("sandbox failed to start", exc) from exc
        finally:
            listener.close()  # the agent holds it now; without it, connections fail fast once it dies
            for fd in (info_read, info_write, args_read, args_write):
                if fd >= 0:
                    os.close(fd)
        try:
            self.client().ping(timeout=max(deadline - time.monotonic(), 0.01))
        except AgentUnavailable as exc:
            raise self._failed("guest agent did not answer", exc) from exc

    def client(self, timeout: float = 30.0) -> AgentClient:
        """A client for the guest agent of this VM."""
        return AgentClient(self.socket_path, timeout=timeout)

    def is_alive(self) -> bool:
        """Whether the sandbox is running (or paused)."""
        return self._process is not None and self._process.poll() is None

    def pids(self) -> set[int]:
        """Host pids of every process of the VM (its pid namespace)."""
        if not self.is_alive() or self._pid_ns is None:
            raise RuntimeError(f"VM {self.vm_dir.name} is not running")
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/pid") == self._pid_ns:
                        pids.add(int(entry))
                except OSError:
                    pass  # exited meanwhile, or not ours to inspect
        return pids

    def pause(self) -> None:
        """Freeze every process of the VM (SIGSTOP across its pid namespace); return once all are stopped."""
        stopped: set[int] = set()
        deadline = time.monotonic() + 5.0
        while True:
            pids = self.pids()
            fresh = pids - stopped  # a process may fork while we stop the others
            for pid in fresh:
                _signal(pid, signal.SIGSTOP)
            stopped |= fresh
            if not fresh and all(_proc_state(pid) in "TtZX" for pid in pids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"VM {self.vm_dir.name} did not stop within 5 s")
            time.sleep(0.001)

    def resume(self) -> None:
        """Continue every process of the VM."""
        for pid in self.pids():
            _signal(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the sandbox (paused or not), reap it and remove its socket; the root stays."""
        if self._process is not None:
            if self._init_pid is not None and self._process.poll() is None:
                # Kill the namespace's init while bwrap still holds it unreaped (so its pid cannot
                # have been reused). Its exit waits for the kernel to kill every process of the
                # namespace, and bwrap exits right after it.
                _signal(self._init_pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=5)
            self._process.kill()
            self._process.wait()
        self._process = self._init_pid = self._pid_ns = None
        self.socket_path.unlink(missing_ok=True)

    def destroy(self) -> None:
        """Stop the sandbox and delete everything of the VM."""
        self.stop()
        shutil.rmtree(self.vm_dir, ignore_errors=True)

    def _failed(self, what: str, exc: Exception) -> RuntimeError:
        """Stop the half-started sandbox; the error to raise, with the end of the agent's log."""
        self.stop()
        try:
            tail = (self.vm_dir / "agent.log").read_bytes()[-2000:].decode(errors="replace").strip()
        except OSError:
            tail = ""
        return RuntimeError(f"VM {self.vm_dir.name}: {what}: {exc}" + (f"\n{tail}" if tail else ""))


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise IsolationUnavailable("bubblewrap is not installed: no `bwrap` on PATH (apt-get install bubblewrap)")
    return path


def _bind_unix(sock: socket.socket, path: Path) -> None:
    """Bind to a Unix socket path, even one longer than sun_path allows (via /proc/self/fd)."""
    if len(os.fsencode(path)) < 100:
        sock.bind(str(path))
        return
    dir_fd = os.open(path.parent, os.O_PATH)
    try:
        sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
    finally:
        os.close(dir_fd)


def _read_child_pid(fd: int, deadline: float) -> int:
    """The host pid of the sandbox's init, from bwrap's --info-fd JSON."""
    data = b""
    while True:
        if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            raise TimeoutError("bwrap did not report its sandbox in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError("bwrap exited before creating the sandbox")
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except ValueError:
            continue  # incomplete JSON so far


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"  # gone


def check_isolation() -> None:
    """Raise IsolationUnavailable, saying what is missing and how to fix it, unless a VM can boot here."""
    probe = subprocess.run(
        [_bwrap(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", *NAMESPACE_FLAGS,
         "--die-with-parent", "--", "true"],
        capture_output=True, text=True, check=False,
    )
    if probe.returncode != 0:
        raise IsolationUnavailable(
            f"bwrap cannot create the sandbox namespaces ({probe.stderr.strip() or probe.returncode}); "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0; on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0), "
            "or in a container run it with --privileged or a seccomp/AppArmor profile that allows them"
        )
    with tempfile.TemporaryDirectory(prefix="envvars-isolation-check-") as scratch:
        sandbox = Sandbox(Path(scratch) / "vm")
        try:
            sandbox.create_root()
            sandbox.boot(timeout=10.0)
        except (OSError, RuntimeError) as exc:
            raise IsolationUnavailable(f"a test VM sandbox did not boot: {exc}") from exc
        finally:
            sandbox.stop()

"""Host side of a VM sandbox: its disk, and its guest agent confined by bubblewrap and cgroups.

A VM lives in `vm_dir` (0700): its disk (`disk.py`: an image mounted on `root/`, or `root/`),
`vsock.sock` the host end of its vsock device, `agent.log` the agent's stderr. `boot()` runs the
guest agent under `bwrap` with `root/` at `/`; the host's /usr (and /bin, /lib… where they are
real directories) and the Python runtime read-only, passed as open directories so no host path
needs to be reachable by the sandbox's user; the agent as one read-only zip of bytecode; a fresh
/proc and /dev; and its own user (guest root = an unprivileged host id when the server is root,
see `host.py`), pid, ipc, uts and network namespaces. As root, the sandbox starts inside its own
cgroups (freezer, memory, pids) with the VM's limits. The host creates the listening socket and
hands it over, and bwrap gets its arguments through a pipe and an empty environment, so nothing
of the host project or the server's environment is visible inside. Sandboxes die with the server
(`--die-with-parent`); a restarted server boots them again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import py_compile
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from envvars_server.sandbox import agent, pam, protocol
from envvars_server.sandbox.disk import Disk, reachable
from envvars_server.sandbox.host import Cgroup, host
from envvars_server.sandbox.protocol import AgentClient, AgentUnavailable

GUEST_AGENT = "/opt/envvars-agent"  # a zip of the agent's bytecode, on sys.path inside the VM
GUEST_PYTHON_DIR = "/opt/python"
GUEST_PAM_SERVICE = f"{agent.PAM_CONFDIR}/{pam.SERVICE}"  # the PAM service the agent's logins use
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # bound or symlinked like the host's
# Host /etc entries that /usr depends on (Debian's /usr/bin/awk, which… link through alternatives).
SYSTEM_ETC = ("etc/alternatives", "etc/ld.so.cache")
ROOT_SKELETON = {"etc": 0o755, "root": 0o700, "home": 0o755, "tmp": 0o1777, "run": 0o755, "var": 0o755,
                 "var/tmp": 0o1777, "opt": 0o755, "usr": 0o755, "proc": 0o755, "dev": 0o755}
ROOT_FILES = {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n"}
# The agent's modules at their package paths (empty package markers where None).
AGENT_MODULES = {
    "envvars_server/__init__.py": None,
    "envvars_server/sandbox/__init__.py": None,
    "envvars_server/sandbox/protocol.py": Path(protocol.__file__),
    "envvars_server/sandbox/pam.py": Path(pam.__file__),
    "envvars_server/sandbox/agent.py": Path(agent.__file__),
}
AGENT_BOOTSTRAP = (f"import sys; sys.path.insert(0, {GUEST_AGENT!r}); "
                   "from envvars_server.sandbox.agent import main; sys.exit(main(sys.argv[1:]))")
NAMESPACE_FLAGS = ("--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--unshare-ipc",
                   "--unshare-uts", "--unshare-net", "--unshare-cgroup-try")

# PR_SET_PDEATHSIG (bwrap --die-with-parent) fires when the *thread* that forked exits, and
# server thread pools retire idle threads; so every sandbox is forked from this one thread,
# which lives as long as the process.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")


class IsolationUnavailable(RuntimeError):
    """This host cannot run VM sandboxes; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class Limits:
    """What one VM may use: memory and disk (MiB), and processes (threads included)."""

    mem_mib: int = 512
    disk_mib: int = 1024
    max_procs: int = 256


def _guest_python() -> tuple[Path | None, str, str]:
    """The host dir to bind at GUEST_PYTHON_DIR (None if /usr has it), the interpreter and library dir inside."""
    base = Path(sys.base_prefix).resolve()
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if base == Path("/usr") or Path("/usr") in base.parents:
        return None, str(base / "bin" / name), str(base / "lib")
    return reachable(base), f"{GUEST_PYTHON_DIR}/bin/{name}", f"{GUEST_PYTHON_DIR}/lib"


def _memfd(name: str, data: bytes) -> int:
    """An anonymous in-memory file holding `data`, at offset 0 (for bwrap's --ro-bind-data)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.cache
def agent_zip() -> bytes:
    """The guest agent as a zip of unchecked bytecode (the guest never recompiles or stats sources)."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(buffer, "w") as archive:
        for name, source in AGENT_MODULES.items():
            target = Path(scratch) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes() if source else b"")
            compiled = py_compile.compile(str(target), cfile=str(target) + "c", dfile=f"{GUEST_AGENT}/{name}",
                                          doraise=True,
                                          invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            archive.write(str(compiled), name + "c")
    return buffer.getvalue()


class Sandbox:
    """One VM: its disk under `vm_dir` and, while booted, its confined guest agent."""

    def __init__(self, vm_dir: Path, limits: Limits | None = None, memory_dirs: Mapping[str, int] | None = None):
        self.vm_dir = Path(vm_dir)
        self.limits = limits or Limits()
        # Guest directories that live in memory only: a tmpfs of at most this many bytes each, part of the
        # VM (the agent writes there), never on its disk under the data dir; emptied when the sandbox stops.
        self.memory_dirs = dict(memory_dirs or {})
        # Named by the VM dir's full path: unique across VMs and across servers sharing a host.
        name = hashlib.sha256(os.fsencode(self.vm_dir.absolute())).hexdigest()[:24]
        self.disk = Disk(self.vm_dir, name)
        self.root = self.disk.root
        self.socket_path = self.vm_dir / "vsock.sock"
        self.cgroup = Cgroup(name, host().cgroups)
        self._process: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self.paused = False

    # -- filesystem -------------------------------------------------------------------------

    def create_root(self, snapshot: Path | None = None) -> None:
        """Make the VM's disk: a fresh skeleton (no /etc/environment), or a copy of a snapshot."""
        if self.disk.create(self.limits.disk_mib, snapshot):
            for name, mode in ROOT_SKELETON.items():
                (self.root / name).mkdir(parents=True, exist_ok=True)
                (self.root / name).chmod(mode)
                _own(self.root / name)
            for name, text in ROOT_FILES.items():
                (self.root / name).write_text(text)
                _own(self.root / name)

    def exists(self) -> bool:
        """Whether the VM's disk exists."""
        return self.disk.exists()

    def snapshot(self, dest: Path) -> None:
        """Copy the disk into `dest` (for a commit), freezing the VM meanwhile if it runs."""
        freeze = self.is_alive() and not self.paused
        if freeze:
            self.pause()
        try:
            self.disk.snapshot(Path(dest))
        finally:
            if freeze:
                self.resume()

    def _prepare_root(self) -> list[str]:
        """Restore the system-dir symlinks a guest may have removed; bwrap binds for the rest."""
        binds = []
        for name in SYSTEM_DIRS:
            host_dir, guest = Path("/", name), self.root / name
            if host_dir.is_symlink():
                if not guest.is_symlink() and not guest.exists():
                    guest.symlink_to(os.readlink(host_dir))
                    _own(guest)
            elif host_dir.is_dir():
                binds += ["--ro-bind", str(host_dir), f"/{name}"]
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
        if not self.disk.exists():
            raise FileNotFoundError(f"VM disk in {self.vm_dir} does not exist; call create_root() first")
        deadline = time.monotonic() + timeout
        self.disk.mount()
        system_binds = self._prepare_root()
        python_dir, python, python_lib = _guest_python()
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fds: list[int] = []  # everything the sandbox inherits, closed here once it has started
        info_read = args_write = -1
        try:
            _bind_unix(listener, self.socket_path)
            listener.listen(64)
            python_binds = [] if python_dir is None else ["--ro-bind", str(python_dir), GUEST_PYTHON_DIR]
            agent_fd = _memfd("envvars-agent", agent_zip())
            fds.append(agent_fd)
            pam_fd = _memfd("envvars-pam", pam.service(agent.ENV_FILE).encode())
            fds.append(pam_fd)
            info_read, info_write = os.pipe()
            fds.append(info_write)
            args_read, args_write = os.pipe()
            fds.append(args_read)
            args = [
                "--bind", str(self.root), "/", "--ro-bind", "/usr", "/usr", *system_binds, *python_binds,
                "--ro-bind-data", str(agent_fd), GUEST_AGENT,
                "--ro-bind-data", str(pam_fd), GUEST_PAM_SERVICE,
                "--proc", "/proc", "--dev", "/dev", *memory_binds(self.memory_dirs),
                *NAMESPACE_FLAGS, "--hostname", self.vm_dir.name[:63] or "vm", "--die-with-parent",
                "--new-session", "--clearenv", "--setenv", "LD_LIBRARY_PATH", python_lib, "--chdir", "/",
                "--info-fd", str(info_write),
            ]
            command = [python, "-I", "-S", "-c", AGENT_BOOTSTRAP, "--listen-fd", str(listener.fileno()),
                       *(arg for path in sorted(self.memory_dirs) for arg in ("--own-mount", path))]
            # Arguments go through --args and the environment is empty: bwrap stays the VM's pid 1,
            # and the guest could otherwise read host paths and the server's environment in /proc/1.
            os.write(args_write, b"".join(os.fsencode(arg) + b"\0" for arg in args))
            os.close(args_write)
            args_write = -1
            launcher = self._launcher()
            with (self.vm_dir / "agent.log").open("ab") as log:
                self._process = _spawner.submit(
                    subprocess.Popen, [*launcher, _bwrap(), "--args", str(args_read), "--", *command], env={},
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(listener.fileno(), *fds), start_new_session=True,
                ).result()
            for fd in fds:
                os.close(fd)
            fds.clear()
            self._init_pid = _read_child_pid(info_read, deadline)
        except Exception as exc:
            raise self._failed("sandbox failed to start", exc) from exc
        finally:
            listener.close()  # the agent holds it now; without it, connections fail fast once it dies
            for fd in (*fds, info_read, args_write):
                if fd >= 0:
                    os.close(fd)
        try:
            self.client().ping(timeout=max(deadline - time.monotonic(), 0.01))
        except AgentUnavailable as exc:
            raise self._failed("guest agent did not answer", exc) from exc

    def _launcher(self) -> list[str]:
        """The command before bwrap: join the VM's cgroups, then drop to the sandbox's host id."""
        if os.geteuid() != 0:
            return []
        joins = "; ".join(f"echo 0 > {shlex.quote(str(procs))}"
                          for procs in self.cgroup.create(self.limits.mem_mib, self.limits.max_procs))
        ids = ["setpriv", f"--reuid={host().uid}", f"--regid={host().gid}", "--clear-groups", "--"]
        return ["/bin/sh", "-c", f"{joins}; exec \"$@\"", "sh", *ids] if joins else ids

    def client(self, timeout: float = 30.0) -> AgentClient:
        """A client for the guest agent of this VM."""
        return AgentClient(self.socket_path, timeout=timeout)

    def is_alive(self) -> bool:
        """Whether the sandbox is running (or paused)."""
        return self._process is not None and self._process.poll() is None

    def pids(self) -> set[int]:
        """Host pids of every process of the VM: its cgroup, or bwrap's descendants without one."""
        if not self.is_alive() or self._process is None:
            raise RuntimeError(f"VM {self.vm_dir.name} is not running")
        if self.cgroup.dirs:
            return self.cgroup.pids() - {self._process.pid}
        return _descendants(self._process.pid)

    def pause(self) -> None:
        """Freeze every process of the VM, whatever namespaces it made; return once all are frozen."""
        if "freezer" in self.cgroup.dirs:
            self.cgroup.freeze()
            self.paused = True
            return
        self.paused = True
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
        self.paused = False
        if "freezer" in self.cgroup.dirs:
            self.cgroup.thaw()
            return
        for pid in self.pids():
            _signal(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the sandbox (paused or not), reap it, unmount its disk and remove its socket."""
        if self._process is not None:
            if self._init_pid is not None and self._process.poll() is None:
                # Kill the namespace's init while bwrap still holds it unreaped (so its pid cannot
                # have been reused). Its exit waits for the kernel to kill every process of the
                # namespace (nested ones too), and bwrap exits right after it.
                _signal(self._init_pid, signal.SIGKILL)
                if "freezer" in self.cgroup.dirs:
                    self.cgroup.thaw()  # a frozen process dies only once thawed
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=5)
            self._process.kill()
            self._process.wait()
        if self.cgroup.dirs:
            self.cgroup.remove()
        self._process = self._init_pid = None
        self.paused = False
        self.socket_path.unlink(missing_ok=True)
        self.disk.unmount()

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


def memory_binds(memory_dirs: Mapping[str, int]) -> list[str]:
    """bwrap's arguments for each memory-only directory: a private tmpfs (0700) of a bounded size."""
    binds: list[str] = []
    for path, size in sorted(memory_dirs.items()):
        if not path.startswith("/") or path == "/" or ".." in path.split("/") or size <= 0:
            raise ValueError(f"memory-only directory {path!r} of {size} bytes: an absolute path below / and a size")
        binds += ["--perms", "0700", "--size", str(size), "--tmpfs", path]
    return binds


def _own(path: Path) -> None:
    """Give a file the host made in a VM's root to the VM's host id."""
    if os.geteuid() == 0:
        os.lchown(path, host().uid, host().gid)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                    parent = int(file.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.add(child)
        todo += children.get(child, [])
    return found


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
    drop = ["setpriv", f"--reuid={host().uid}", f"--regid={host().gid}", "--clear-groups", "--"]
    probe = subprocess.run(
        [*(drop if os.geteuid() == 0 else []), _bwrap(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
         *NAMESPACE_FLAGS, "--die-with-parent", "--", "true"],
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

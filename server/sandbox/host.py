"""What this host gives VM sandboxes: an unprivileged id to run them as, cgroups, loop-mounted disks.

Detected once per process. As root, VMs run under SANDBOX_ID (never root on the host), each in
its own cgroup of the v1 `freezer`, `memory` and `pids` controllers where those are mounted
writable, on an ext4 disk image of its declared size mounted `nosuid,nodev` through a loop
device. Without root, VMs run as the server's own user, in plain directories, and only what
the host allows is enforced; `describe()` says which, and the server prints it at start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

# The host uid and gid of every VM's processes and files when the server runs as root: no
# account uses it, so a file a VM makes is nobody's on the host (and its disk is nosuid anyway).
SANDBOX_ID = 2_000_000_000
CONTROLLERS = ("freezer", "memory", "pids")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "envvars-vms"  # below the server's own cgroup in each hierarchy
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18


class CgroupError(RuntimeError):
    """A VM's cgroup could not be set up or driven."""


@dataclass(frozen=True)
class Host:
    """The isolation this host offers; `describe()` is the start-up line."""

    uid: int
    gid: int
    cgroups: dict[str, Path]  # controller -> the directory holding one cgroup per VM
    images: bool  # disks are loop-mounted ext4 images of the VM's declared size

    def describe(self) -> str:
        """Which limits are enforced, in one line."""
        parts = ["VMs run as root: their files are root's on the host" if self.uid == 0
                 else f"VMs run as host uid {self.uid}"]
        parts.append("freeze: cgroup freezer" if "freezer" in self.cgroups else "freeze: SIGSTOP of the process tree")
        parts.append("memory: cgroup limit" if "memory" in self.cgroups else "memory: NOT enforced (no memory cgroup)")
        parts.append("processes: cgroup pids limit" if "pids" in self.cgroups
                     else "processes: NOT enforced (no pids cgroup)")
        parts.append("disk: ext4 image of fs_size_mib, loop-mounted nosuid" if self.images
                     else "disk: NOT enforced (plain directories; needs root and loop devices)")
        return "; ".join(parts)


@functools.cache
def host() -> Host:
    """The isolation of this host (detected once)."""
    root = os.geteuid() == 0
    images = root and all(shutil.which(tool) for tool in ("mkfs.ext4", "mount", "umount")) and Path(
        "/dev/loop-control").exists()
    return Host(
        uid=SANDBOX_ID if root else os.getuid(),
        gid=SANDBOX_ID if root else os.getgid(),
        cgroups=_cgroup_dirs() if root else {},
        images=images,
    )


def private_mounts() -> None:
    """As root, move this process into a mount namespace of its own (call before any thread starts).

    The loop mounts of its VMs' disks are then invisible to the host and go away with the process
    and its sandboxes, however it ends; elsewhere nothing happens.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot make a private mount namespace: {os.strerror(errno)}")


def _cgroup_dirs() -> dict[str, Path]:
    """For each v1 controller mounted writable: our VMs' parent cgroup below the server's own."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup", encoding="utf-8") as file:
        for line in file:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                own[controller] = path
    dirs = {}
    for controller in CONTROLLERS:
        mount = CGROUP_ROOT / controller
        if controller not in own or not (mount / "cgroup.procs").exists():
            continue
        parent = mount / own[controller].lstrip("/") / CGROUP_GROUP
        try:
            parent.mkdir(exist_ok=True)
        except OSError:
            continue
        dirs[controller] = parent
    return dirs


class Cgroup:
    """One VM's cgroups: limits, the `cgroup.procs` files its first process joins, freeze and kill."""

    def __init__(self, name: str, dirs: dict[str, Path]):
        self.dirs = {controller: parent / name for controller, parent in dirs.items()}

    def create(self, mem_mib: int, max_procs: int) -> list[Path]:
        """Make the cgroups with their limits; the `cgroup.procs` files to join."""
        for path in self.dirs.values():
            path.mkdir(exist_ok=True)
        if "memory" in self.dirs:
            limit = str(mem_mib << 20)
            _write(self.dirs["memory"] / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # absent where swap accounting is off
                _write(self.dirs["memory"] / "memory.memsw.limit_in_bytes", limit)
        if "pids" in self.dirs:
            _write(self.dirs["pids"] / "pids.max", str(max_procs))
        if "freezer" in self.dirs:
            _write(self.dirs["freezer"] / "freezer.state", "THAWED")
        return [path / "cgroup.procs" for path in self.dirs.values()]

    def freeze(self, timeout: float = 5.0) -> None:
        """Freeze every process of the cgroup, whatever namespaces it made; return once all are frozen."""
        state = self.dirs["freezer"] / "freezer.state"
        deadline = time.monotonic() + timeout
        # v1 stays FREEZING while a task is busy in the kernel (a fork, an unlink); each write of
        # FROZEN retries the tasks not yet frozen, so keep asking until every one is.
        while True:
            _write(state, "FROZEN")
            for _ in range(10):
                if state.read_text().strip() == "FROZEN":
                    return
                time.sleep(0.001)
            if time.monotonic() > deadline:
                self.thaw()
                raise CgroupError(f"cgroup {state.parent.name} did not freeze within {timeout} s")

    def thaw(self) -> None:
        """Let the cgroup's processes run again."""
        _write(self.dirs["freezer"] / "freezer.state", "THAWED")

    def pids(self) -> set[int]:
        """Every process in the cgroup."""
        for path in self.dirs.values():
            with contextlib.suppress(FileNotFoundError):
                return {int(pid) for pid in (path / "cgroup.procs").read_text().split()}
        return set()

    def remove(self) -> None:
        """Kill whatever is left in the cgroups (thawed so it can die) and delete them."""
        deadline = time.monotonic() + 5.0
        while pids := self.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if "freezer" in self.dirs:
                with contextlib.suppress(OSError):
                    self.thaw()
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {sorted(pids)} of cgroup {self.name} did not die")
            time.sleep(0.005)
        for path in self.dirs.values():
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()

    @property
    def name(self) -> str:
        """The VM's cgroup name."""
        return next(iter(self.dirs.values())).name if self.dirs else ""


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as file:
        file.write(value)

"""A VM's disk: an ext4 image of its declared size, loop-mounted `nosuid,nodev` (as root), or a directory.

An image is what a VM's disk really is: its size is the limit, sparse files stay sparse, setuid
bits and device files mean nothing on the host (the mount is `nosuid,nodev`), and a snapshot is a
copy of one regular file the server owns, taken while the file system is frozen (FIFREEZE), so no
name inside the VM is ever resolved on the host. Without root, the disk is a plain directory and a
snapshot copies it with `cp` without following any link (the VM is frozen meanwhile), dropping
setuid/setgid bits.

A disk lives in `vm_dir`: `disk.img`, or `root/` alone. A snapshot directory holds the same. As
root, the disk is mounted for use at `MOUNTS/<name>`: the VM's host id must reach it to start its
sandbox, and that is the only way in (0710, group of the sandbox id), whereas the data dir is 0700.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from envvars_server.sandbox.host import host

IMAGE = "disk.img"
ROOT = "root"
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878
MOUNT_OPTIONS = "nosuid,nodev,noatime"
MOUNTS = Path("/run/envvars-vms")


class DiskError(RuntimeError):
    """A disk could not be made, mounted or copied; the message carries the tool's own words."""


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise DiskError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")


class Disk:
    """The disk of the VM in `vm_dir`."""

    def __init__(self, vm_dir: Path, name: str):
        self.vm_dir = vm_dir
        self.image = vm_dir / IMAGE
        self.tree = vm_dir / ROOT
        self.root = MOUNTS / name if os.geteuid() == 0 else self.tree  # where the VM's `/` is seen

    def exists(self) -> bool:
        """Whether the disk was made (it may be unmounted)."""
        return self.image.is_file() if host().images else self.tree.is_dir()

    def create(self, size_mib: int, snapshot: Path | None = None) -> bool:
        """Make the disk (a copy of `snapshot` if given) and mount it; True if it is empty and new."""
        if self.exists():
            raise FileExistsError(f"VM disk in {self.vm_dir} already exists")
        self.vm_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not host().images:
            staging = self.vm_dir / ".root-new"  # renamed into place when complete
            if snapshot is not None:
                _copy_tree(snapshot / ROOT, staging)
            else:
                staging.mkdir()
                os.chown(staging, host().uid, host().gid)
            staging.rename(self.tree)
            self.mount()
            return snapshot is None
        staging_image = self.vm_dir / ".disk-new.img"
        if snapshot is not None:
            _run("cp", "--sparse=always", "--reflink=auto", str(snapshot / IMAGE), str(staging_image))
        else:
            with open(staging_image, "wb") as file:
                file.truncate(size_mib << 20)
            ids = f"{host().uid}:{host().gid}"
            _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={ids},lazy_itable_init=1,lazy_journal_init=1",
                 str(staging_image))
        staging_image.rename(self.image)
        self.mount()
        if snapshot is None:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(self.root / "lost+found")
        return snapshot is None

    def mount(self) -> None:
        """Mount the disk at `root` (as root; nothing to do otherwise, or when mounted already)."""
        if self.root == self.tree or os.path.ismount(self.root):
            return
        _make_mounts()
        self.root.mkdir(mode=0o700, exist_ok=True)
        if host().images:
            _run("mount", "-t", "ext4", "-o", f"loop,{MOUNT_OPTIONS}", str(self.image), str(self.root))
        else:
            _run("mount", "--bind", "-o", MOUNT_OPTIONS, str(self.tree), str(self.root))

    def unmount(self) -> None:
        """Unmount the disk (lazily if something still holds it); the disk stays."""
        if self.root == self.tree or not os.path.ismount(self.root):
            return
        try:
            _run("umount", str(self.root))
        except DiskError:
            _run("umount", "--lazy", str(self.root))
        with contextlib.suppress(OSError):
            self.root.rmdir()

    def snapshot(self, dest: Path) -> None:
        """Copy the disk into the new directory `dest`; call it with every process of the VM frozen."""
        dest.mkdir(mode=0o700, parents=True)
        if not host().images:
            _copy_tree(self.tree, dest / ROOT)
            return
        with self._frozen():
            _run("cp", "--sparse=always", "--reflink=auto", str(self.image), str(dest / IMAGE))

    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """The mounted file system flushed and frozen (a consistent image) for the duration."""
        if not os.path.ismount(self.root):
            yield
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FIFREEZE, 0)
            try:
                yield
            finally:
                fcntl.ioctl(fd, FITHAW, 0)
        finally:
            os.close(fd)


def _make_mounts() -> None:
    if not MOUNTS.is_dir():
        MOUNTS.mkdir(mode=0o710, exist_ok=True)
        os.chown(MOUNTS, 0, host().gid)


@functools.cache
def reachable(path: Path) -> Path:
    """`path`, or as root a read-only bind of it in MOUNTS, where a sandbox's host id can reach it."""
    if os.geteuid() != 0 or all(os.stat(parent).st_mode & 0o001 for parent in path.parents):
        return path
    _make_mounts()
    view = MOUNTS / ("ro-" + hashlib.sha256(os.fsencode(path)).hexdigest()[:16])
    lock = os.open(MOUNTS, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:  # one bind per mount namespace, whichever process of it comes first
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.ismount(view):
            view.mkdir(exist_ok=True)
            _run("mount", "--bind", "-o", "ro,nosuid,nodev", str(path), str(view))
    finally:
        os.close(lock)
    return view


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a directory tree keeping links as links (never following one), holes as holes, no s-bits."""
    _run("cp", "-a", "--no-dereference", "--sparse=always", "--no-target-directory", str(src), str(dest))
    _run("chmod", "-R", "ug-s", str(dest))

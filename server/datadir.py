"""The data dir is private to the server's user: 0700 directories, 0600 files, checked at every start.

It holds every tenant's values and token digests (the SQLite file and its -wal/-shm, unless the store
is on PostgreSQL), the at-rest key (unless `--at-rest-key` names a file elsewhere), and one directory
per kind of workload (VMs, containers...) or snapshot, holding one directory each: what stays on the
node whichever the store.
Whatever is wider than that is tightened, and said so in the log. A workload's own files (inside
its disk) are not touched: they belong to the workload's host id.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("envvars.datadir")

DIR_MODE, FILE_MODE = 0o700, 0o600


def secure_data_dir(data_dir: Path) -> list[Path]:
    """Create `data_dir` if needed and make it and its server-owned entries private; what was tightened."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tightened = [path for path in _server_owned(data_dir) if _tighten(path)]
    for path in tightened:
        log.warning("data dir: %s was readable by others; now %s", path, "0700" if path.is_dir() else "0600")
    return tightened


def create_private(path: Path) -> None:
    """Create an empty file readable by its owner only, unless it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))


def _server_owned(data_dir: Path) -> list[Path]:
    """The data dir, its entries, and the entries of each workload or snapshot directory (not inside disks)."""
    paths = [data_dir, *data_dir.iterdir()]
    for kind in [path for path in paths[1:] if path.is_dir() and not path.is_symlink()]:
        for entry in kind.iterdir():
            paths.append(entry)
            if entry.is_dir() and not entry.is_symlink():
                paths += [child for child in entry.iterdir() if child.name != "root"]
    return paths


def _tighten(path: Path) -> bool:
    """Remove group and other permissions from a directory or regular file; whether any were set."""
    info = path.lstat()
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) or not info.st_mode & 0o077:
        return False
    path.chmod(DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE)
    return True

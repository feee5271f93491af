"""Vers orchestrator: VMs on the shared workloads layer, with what only Vers has (commits, branching, IPs).

Every VM creation takes the owner's account-wide set at the moment of the request; commits do
not capture the env set (a VM made from a commit gets the set current at its own creation).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envvars_server.errors import ApiError, DomainError
from envvars_server.machines import (
    AgentDown,
    BootFailed,
    FreezeFailed,
    GuestRefused,
    Machines,
    NotFound,
    NotRunning,
    QuotaExceeded,
)
from envvars_server.store import Store, now_iso

GUEST_ERROR_STATUS = {"bad_path": 400, "bad_request": 400, "not_found": 404, "is_directory": 400,
                      "timeout": 504, "too_large": 413, "io_error": 500}
STATUS: dict[type[DomainError], int] = {
    NotFound: 404, NotRunning: 409, QuotaExceeded: 403, BootFailed: 500, AgentDown: 503, FreezeFailed: 503}
CONFIG_FIELDS = ("mem_size_mib", "vcpu_count", "fs_size_mib", "labels")


def translate(error: DomainError) -> ApiError:
    """Vers' status for a workload failure (its envelope has no codes)."""
    if isinstance(error, GuestRefused):
        return ApiError(GUEST_ERROR_STATUS.get(error.code, 500), error.message)
    return ApiError(STATUS.get(type(error), 500), error.message)


class VersVms:
    """The VMs of every user (`machines`), and the commits made of them."""

    def __init__(self, store: Store, machines: Machines, commits_dir: Path):
        self.store = store
        self.machines = machines
        self.commits_dir = commits_dir

    @staticmethod
    def new_record(owner: str, config: Mapping[str, Any], parent_commit_id: str | None = None,
                   grandparent_vm_id: str | None = None) -> dict[str, Any]:
        """The record of a new VM with `config` (resolved: every field set)."""
        vm_id = str(uuid.uuid4())
        return {
            "id": vm_id,
            "vm_id": vm_id,
            "owner_id": owner,
            "ip": "fd00:7665:7273::" + vm_id[-4:],
            "mem_size_mib": config["mem_size_mib"],
            "vcpu_count": config["vcpu_count"],
            "fs_size_mib": config["fs_size_mib"],
            "labels": dict(config.get("labels") or {}),
            "parent_commit_id": parent_commit_id,
            "grandparent_vm_id": grandparent_vm_id,
        }

    def create(
        self, owner: str, config: Mapping[str, Any], *, wait: bool = True, source_root: Path | None = None,
        parent_commit_id: str | None = None, grandparent_vm_id: str | None = None,
    ) -> str:
        """Create a VM (fresh, or from a commit's disk) and boot it with the owner's env set."""
        record = self.new_record(owner, config, parent_commit_id, grandparent_vm_id)
        return self.machines.create(record, wait=wait, source_root=source_root)

    def commit(self, owner: str, vm_id: str, *, keep_paused: bool = False, name: str | None = None,
               description: str | None = None) -> str:
        """Snapshot a VM's root filesystem (paused meanwhile) as a new commit."""
        commit_id = str(uuid.uuid4())
        record = self.machines.snapshot(owner, vm_id, self.commits_dir / commit_id, keep_paused)
        self.store.save_commit({
            "commit_id": commit_id,
            "owner_id": owner,
            "created_at": now_iso(),
            "name": name or f"commit-{commit_id[:8]}",
            "description": description,
            "parent_vm_id": vm_id,
            "grandparent_commit_id": record.get("parent_commit_id"),
            "is_public": False,
            "vm_config": {key: record[key] for key in CONFIG_FIELDS},
            **self.machines.placed(),  # its disk is in this node's data dir
        })
        return commit_id

    def branch(self, owner: str, vm_or_commit_id: str, count: int, keep_paused: bool = False) -> list[str]:
        """New VMs from a commit, or from a fresh commit of a VM; each gets the current env set."""
        self.machines.reserve(owner, count)  # fail before committing; each create checks again
        grandparent = None
        if self.store.get_machine(self.machines.platform, owner, vm_or_commit_id) is not None:
            grandparent = vm_or_commit_id
            commit_id = self.commit(owner, vm_or_commit_id, keep_paused=keep_paused)
        else:
            commit_id = vm_or_commit_id
        commit = self.store.get_commit(owner, commit_id)
        if commit is None:
            raise ApiError(404, f"commit {commit_id!r} not found")
        self.machines.here(commit, f"commit {commit_id!r}")  # VMs are made where the commit's disk is
        return [
            self.create(owner, commit["vm_config"], source_root=self.commits_dir / commit_id,
                        parent_commit_id=commit_id, grandparent_vm_id=grandparent or commit.get("parent_vm_id"))
            for _ in range(count)
        ]

"""VM lifecycle on top of sandboxes: boot with one-time env injection, pause, commit, branch, delete.

The injection path: every VM creation takes the owner's env set at the moment of the request and,
once the guest agent answers, sends exactly one `WriteFile` of `/etc/environment` (mode 0644)
over the VM's vsock socket; only then is the VM reported `running`. Running VMs are never
re-synced, and commits do not capture the env set (a VM made from a commit gets the set current
at its own creation).

After a server restart, VMs that were `running` boot again from their kept root filesystem (with
the `/etc/environment` written at their first boot, not re-injected), `paused`/`sleeping` VMs
boot and pause again, and VMs still `booting` when the server stopped are `dead`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envvars.envfile import render
from envvars_server.errors import ApiError
from envvars_server.sandbox import AgentUnavailable, GuestError, Limits, Sandbox
from envvars_server.sandbox.host import CgroupError
from envvars_server.store import Store, now_iso

log = logging.getLogger("envvars.orchestrator")

ENV_FILE = "/etc/environment"
BOOT_TIMEOUT_S = 30.0
PAUSED_STATES = {"paused", "sleeping"}
DEFAULT_MAX_VMS_PER_USER = 20
DEFAULT_MAX_PROCS = 256
GUEST_ERROR_STATUS = {"bad_path": 400, "bad_request": 400, "not_found": 404, "is_directory": 400,
                      "timeout": 504, "too_large": 413, "io_error": 500}


@dataclass
class Machine:
    """A VM's sandbox and the events that order operations on it."""

    sandbox: Sandbox
    booted: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Orchestrator:
    """Creates and drives the VMs of every user; records live in the store, roots under data_dir."""

    def __init__(self, store: Store, data_dir: Path, env_for: Callable[[str], Mapping[str, str]],
                 max_vms_per_user: int = DEFAULT_MAX_VMS_PER_USER, max_procs: int = DEFAULT_MAX_PROCS):
        self.store = store
        self.vms_dir = data_dir / "vms"
        self.commits_dir = data_dir / "commits"
        self.env_for = env_for
        self.max_vms_per_user = max_vms_per_user
        self.max_procs = max_procs
        self._machines: dict[str, Machine] = {}
        self._registry_lock = threading.Lock()
        self._quota_lock = threading.Lock()

    def _sandbox(self, record: Mapping[str, Any]) -> Sandbox:
        """The sandbox of a VM record, with the VM's declared memory and disk and the server's process limit."""
        limits = Limits(mem_mib=record["mem_size_mib"], disk_mib=record["fs_size_mib"], max_procs=self.max_procs)
        return Sandbox(self.vms_dir / record["vm_id"], limits)

    def _reserve(self, owner: str, count: int) -> None:
        """403 unless `count` more live VMs keep the owner within the per-user quota (call under _quota_lock)."""
        live = len(self.store.list_vms(owner))
        if live + count > self.max_vms_per_user:
            raise ApiError(403, f"VM quota exceeded: {live} live VMs + {count} requested > {self.max_vms_per_user} "
                                "per user; delete VMs first")

    # -- lookups ----------------------------------------------------------------------------

    def record(self, owner: str, vm_id: str) -> dict[str, Any]:
        """The owner's live VM record, or 404 (also for another user's VM)."""
        record = self.store.get_vm(owner, vm_id)
        if record is None:
            raise ApiError(404, f"VM {vm_id!r} not found")
        return record

    def _ready(self, owner: str, vm_id: str) -> tuple[dict[str, Any], Machine]:
        """The record and machine of a VM that finished booting, or a clear error."""
        self.record(owner, vm_id)
        with self._registry_lock:
            machine = self._machines.get(vm_id)
        if machine is None:
            raise ApiError(409, f"VM {vm_id!r} is not running")
        if not machine.booted.wait(BOOT_TIMEOUT_S):
            raise ApiError(409, f"VM {vm_id!r} is still booting")
        record = self.record(owner, vm_id)
        if record["state"] == "dead":
            raise ApiError(409, f"VM {vm_id!r} is dead")
        return record, machine

    def _running(self, owner: str, vm_id: str) -> Machine:
        record, machine = self._ready(owner, vm_id)
        if record["state"] in PAUSED_STATES:
            raise ApiError(409, f"VM {vm_id!r} is {record['state']}: set its state to Running first")
        return machine

    # -- creation ---------------------------------------------------------------------------

    def create(
        self,
        owner: str,
        config: Mapping[str, Any],
        *,
        wait: bool = True,
        source_root: Path | None = None,
        parent_commit_id: str | None = None,
        grandparent_vm_id: str | None = None,
    ) -> str:
        """Create a VM (fresh, or from a commit's disk) and boot it with the owner's env set."""
        env = dict(self.env_for(owner))  # the set at the moment of the request
        vm_id = str(uuid.uuid4())
        record = {
            "vm_id": vm_id,
            "owner_id": owner,
            "state": "booting",
            "created_at": now_iso(),
            "deleted_at": None,
            "ip": "fd00:7665:7273::" + vm_id[-4:],
            "mem_size_mib": config["mem_size_mib"],
            "vcpu_count": config["vcpu_count"],
            "fs_size_mib": config["fs_size_mib"],
            "labels": dict(config.get("labels") or {}),
            "parent_commit_id": parent_commit_id,
            "grandparent_vm_id": grandparent_vm_id,
        }
        with self._quota_lock:
            self._reserve(owner, 1)
            self.store.save_vm(record)
        machine = Machine(self._sandbox(record))
        with self._registry_lock:
            self._machines[vm_id] = machine
        if not wait:
            threading.Thread(target=self._boot, args=(machine, record, env, source_root), daemon=True).start()
            return vm_id
        self._boot(machine, record, env, source_root)
        if record["state"] != "running":
            raise ApiError(500, f"VM {vm_id!r} failed to boot; see the server log")
        return vm_id

    def _boot(
        self, machine: Machine, record: dict[str, Any], env: Mapping[str, str] | None, source_root: Path | None
    ) -> None:
        """Start the sandbox, inject `/etc/environment` once (unless `env` is None), mark it running."""
        try:
            if env is not None:
                machine.sandbox.create_root(source_root)
            machine.sandbox.boot(timeout=BOOT_TIMEOUT_S)
            if env is not None:
                machine.sandbox.client().write_file(ENV_FILE, render(env).encode(), mode=0o644, create_dirs=True)
            record["state"] = "running"
        except Exception:
            log.exception("VM %s failed to boot", record["vm_id"])
            machine.sandbox.stop()
            record["state"] = "dead"
        self.store.save_vm(record)
        machine.booted.set()

    def commit(
        self, owner: str, vm_id: str, *, keep_paused: bool = False, name: str | None = None,
        description: str | None = None,
    ) -> str:
        """Snapshot a VM's root filesystem (paused meanwhile) as a new commit."""
        record, machine = self._ready(owner, vm_id)
        commit_id = str(uuid.uuid4())
        with machine.lock:
            was_paused = record["state"] in PAUSED_STATES
            if not was_paused:
                _pause(machine)
            try:
                machine.sandbox.snapshot(self.commits_dir / commit_id)
            finally:
                if not was_paused and not keep_paused:
                    machine.sandbox.resume()
            if keep_paused and not was_paused:
                record["state"] = "paused"
                self.store.save_vm(record)
        self.store.save_commit({
            "commit_id": commit_id,
            "owner_id": owner,
            "created_at": now_iso(),
            "name": name or f"commit-{commit_id[:8]}",
            "description": description,
            "parent_vm_id": vm_id,
            "grandparent_commit_id": record.get("parent_commit_id"),
            "is_public": False,
            "vm_config": _config_of(record),
        })
        return commit_id

    def commit_root(self, owner: str, commit_id: str) -> tuple[dict[str, Any], Path]:
        """A commit of the owner and its snapshot directory, or 404."""
        commit = self.store.get_commit(owner, commit_id)
        if commit is None:
            raise ApiError(404, f"commit {commit_id!r} not found")
        return commit, self.commits_dir / commit_id

    def branch(self, owner: str, vm_or_commit_id: str, count: int, keep_paused: bool = False) -> list[str]:
        """New VMs from a commit, or from a fresh commit of a VM; each gets the current env set."""
        with self._quota_lock:
            self._reserve(owner, count)  # fail before committing; each create checks again
        grandparent = None
        if self.store.get_vm(owner, vm_or_commit_id) is not None:
            grandparent = vm_or_commit_id
            commit_id = self.commit(owner, vm_or_commit_id, keep_paused=keep_paused)
        else:
            commit_id = vm_or_commit_id
        commit, root = self.commit_root(owner, commit_id)
        return [
            self.create(owner, commit["vm_config"], source_root=root, parent_commit_id=commit_id,
                        grandparent_vm_id=grandparent or commit.get("parent_vm_id"))
            for _ in range(count)
        ]

    # -- state, deletion --------------------------------------------------------------------

    def set_state(self, owner: str, vm_id: str, state: str) -> None:
        """Pause (`paused`/`sleeping`) or resume (`running`) a VM."""
        record, machine = self._ready(owner, vm_id)
        with machine.lock:
            if state in PAUSED_STATES and record["state"] == "running":
                _pause(machine)
            elif state == "running" and record["state"] in PAUSED_STATES:
                machine.sandbox.resume()
            record["state"] = state
            self.store.save_vm(record)

    def delete(self, owner: str, vm_id: str) -> None:
        """Stop the VM, remove its root filesystem and mark its record deleted."""
        record = self.record(owner, vm_id)
        with self._registry_lock:
            machine = self._machines.pop(vm_id, None)
        if machine is not None:
            machine.booted.wait(BOOT_TIMEOUT_S)
            machine.sandbox.destroy()
        else:
            self._sandbox(record).destroy()
        record["state"] = "dead"
        record["deleted_at"] = now_iso()
        self.store.save_vm(record)

    # -- guest operations -------------------------------------------------------------------

    def exec(self, owner: str, vm_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run a command inside the VM; the environment is the VM's `/etc/environment`."""
        machine = self._running(owner, vm_id)
        return dict(_guest(lambda: machine.sandbox.client().exec(**request)))

    def read_file(self, owner: str, vm_id: str, path: str) -> bytes:
        """A file's bytes, from inside the VM root only."""
        machine = self._running(owner, vm_id)
        content: bytes = _guest(lambda: machine.sandbox.client().read_file(path))
        return content

    def write_file(self, owner: str, vm_id: str, path: str, content: bytes, mode: int, create_dirs: bool) -> None:
        """Write a file inside the VM root only."""
        machine = self._running(owner, vm_id)
        _guest(lambda: machine.sandbox.client().write_file(path, content, mode=mode, create_dirs=create_dirs))

    # -- server start and stop --------------------------------------------------------------

    def recover(self) -> None:
        """Bring back the VMs recorded before a restart (see the module docstring)."""
        for record in self.store.list_vms():
            machine = Machine(self._sandbox(record))
            if record["state"] == "booting" or not machine.sandbox.exists():
                record["state"] = "dead"
                self.store.save_vm(record)
                machine.booted.set()
                continue
            with self._registry_lock:
                self._machines[record["vm_id"]] = machine
            paused = record["state"] if record["state"] in PAUSED_STATES else None
            self._boot(machine, record, None, None)
            if paused and record["state"] == "running":
                machine.sandbox.pause()
                record["state"] = paused
                self.store.save_vm(record)

    def shutdown(self) -> None:
        """Stop every sandbox; their roots and records stay for the next start."""
        with self._registry_lock:
            machines = list(self._machines.values())
            self._machines.clear()
        for machine in machines:
            machine.sandbox.stop()


def _config_of(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in ("mem_size_mib", "vcpu_count", "fs_size_mib", "labels")}


def _guest(call: Callable[[], Any]) -> Any:
    """Run a guest-agent call, turning its refusals into API errors with the agent's reason."""
    try:
        return call()
    except GuestError as exc:
        raise ApiError(GUEST_ERROR_STATUS.get(exc.code, 500), exc.message) from None
    except AgentUnavailable as exc:
        raise ApiError(503, f"the VM's agent did not answer: {exc}") from None


def _pause(machine: Machine) -> None:
    """Freeze a VM; a VM whose processes would not freeze stays running and the caller may retry."""
    try:
        machine.sandbox.pause()
    except CgroupError as exc:
        raise ApiError(503, f"the VM could not be paused: {exc}; try again") from None

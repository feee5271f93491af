"""Workloads on sandboxes, for every platform: a root filesystem, a boot that writes the workload's env
file once, restart, pause, snapshot, delete, and recovery after a server restart.

The injection path: a workload boots, and once its guest agent answers, gets exactly one `WriteFile`
of its env file holding its env source's set at that moment; only then is it `running`. Where the
set goes is the platform's `Delivery`: a VM's `/etc/environment`, read by pam_env at each login
(`ETC_ENVIRONMENT`), or a container's process environment, inherited intact by every process started
in it (`PROCESS_ENVIRONMENT`). A running workload never sees later changes until it is restarted
(`restart` boots it again and writes the then-current set, once). Each record keeps a digest of the
set its current boot received, so a platform can tell whether the workload is in sync with the
stored set.

After a server restart, workloads that were `running` boot again from their kept root (keeping the
env file of their last boot, not re-injected), `paused`/`sleeping` ones boot and pause
again, and those still `booting` when the server stopped are `dead`.

Failures are domain errors (`MachineError` subclasses); each platform maps them to its own statuses
and codes. Nothing here names a platform.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envvars.envfile import render
from envvars_server.errors import DomainError
from envvars_server.sandbox import AgentUnavailable, GuestError, Limits, Sandbox
from envvars_server.sandbox.agent import PROCESS_ENV_FILE
from envvars_server.sandbox.host import CgroupError
from envvars_server.store import Store, now_iso

log = logging.getLogger("envvars.machines")

BOOT_TIMEOUT_S = 30.0
PAUSED_STATES = {"paused", "sleeping"}
DEFAULT_MAX_PER_USER = 20
DEFAULT_MAX_PROCS = 256


class MachineError(DomainError):
    """A workload operation that cannot be done; the platform picks the status."""


class NotFound(MachineError):
    """No such workload of this user (another user's counts as none)."""


class NotRunning(MachineError):
    """The workload is booting, paused, sleeping or dead."""


class QuotaExceeded(MachineError):
    """The user already has as many live workloads as allowed."""


class BootFailed(MachineError):
    """The sandbox did not boot; the server log says why."""


class GuestRefused(MachineError):
    """The guest agent refused a request; `code` is its reason (bad_path, not_found, timeout...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class AgentDown(MachineError):
    """The guest agent did not answer."""


class FreezeFailed(MachineError):
    """The workload's processes could not be frozen for a pause; the caller may retry."""


EnvSource = Callable[[Mapping[str, Any]], Mapping[str, str]]
"""The set a workload receives at boot, from its record (its owner's set, its own set...)."""


@dataclass(frozen=True)
class Delivery:
    """Where a workload's set is written at boot, in which form and with which mode."""

    path: str
    render: Callable[[Mapping[str, str]], bytes]
    mode: int


ETC_ENVIRONMENT = Delivery("/etc/environment", lambda env: render(env).encode(), 0o644)
PROCESS_ENVIRONMENT = Delivery(
    PROCESS_ENV_FILE, lambda env: b"".join(f"{key}={value}".encode() + b"\0" for key, value in sorted(env.items())),
    0o600)


def env_digest(variables: Mapping[str, str]) -> str:
    """A digest of a set, to tell whether a workload's boot received the stored set."""
    return hashlib.sha256(json.dumps(dict(variables), sort_keys=True).encode()).hexdigest()


@dataclass
class Machine:
    """A workload's sandbox and the events that order operations on it."""

    sandbox: Sandbox
    booted: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Machines:
    """The workloads of one platform (of every user): records in the store, roots under `root_dir`.

    A record is a dict with `id`, `owner_id`, `state`, `created_at`, `deleted_at`, `mem_size_mib`,
    `fs_size_mib`, `env_digest`, plus whatever the platform keeps; `noun` names a workload in messages.
    """

    def __init__(self, store: Store, platform: str, root_dir: Path, env_for: EnvSource, noun: str,
                 delivery: Delivery = ETC_ENVIRONMENT, max_per_user: int = DEFAULT_MAX_PER_USER,
                 max_procs: int = DEFAULT_MAX_PROCS):
        self.store = store
        self.platform = platform
        self.root_dir = root_dir
        self.env_for = env_for
        self.noun = noun
        self.delivery = delivery
        self.max_per_user = max_per_user
        self.max_procs = max_procs
        self._machines: dict[str, Machine] = {}
        self._registry_lock = threading.Lock()
        self._quota_lock = threading.Lock()

    def _sandbox(self, record: Mapping[str, Any]) -> Sandbox:
        limits = Limits(mem_mib=record["mem_size_mib"], disk_mib=record["fs_size_mib"], max_procs=self.max_procs)
        return Sandbox(self.root_dir / record["id"], limits)

    def reserve(self, owner: str, count: int) -> None:
        """QuotaExceeded unless `count` more live workloads keep the owner within the per-user quota."""
        with self._quota_lock:
            self._check_quota(owner, count)

    def _check_quota(self, owner: str, count: int) -> None:
        live = len(self.list(owner))
        if live + count > self.max_per_user:
            raise QuotaExceeded(f"{self.noun} quota exceeded: {live} live {self.noun}s + {count} requested > "
                                f"{self.max_per_user} per user; delete {self.noun}s first")

    # -- lookups ----------------------------------------------------------------------------

    def list(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Live records, of one owner or of everyone, oldest first."""
        return self.store.list_machines(self.platform, owner)

    def record(self, owner: str, machine_id: str) -> dict[str, Any]:
        """The owner's live record, or NotFound (also for another user's workload)."""
        record = self.store.get_machine(self.platform, owner, machine_id)
        if record is None:
            raise NotFound(f"{self.noun} {machine_id!r} not found")
        return record

    def _ready(self, owner: str, machine_id: str) -> tuple[dict[str, Any], Machine]:
        """The record and machine of a workload that finished booting."""
        self.record(owner, machine_id)
        with self._registry_lock:
            machine = self._machines.get(machine_id)
        if machine is None:
            raise NotRunning(f"{self.noun} {machine_id!r} is not running")
        if not machine.booted.wait(BOOT_TIMEOUT_S):
            raise NotRunning(f"{self.noun} {machine_id!r} is still booting")
        record = self.record(owner, machine_id)
        if record["state"] == "dead":
            raise NotRunning(f"{self.noun} {machine_id!r} is dead")
        return record, machine

    def _running(self, owner: str, machine_id: str) -> Machine:
        record, machine = self._ready(owner, machine_id)
        if record["state"] in PAUSED_STATES:
            raise NotRunning(f"{self.noun} {machine_id!r} is {record['state']}: set its state to Running first")
        return machine

    # -- creation and restart ---------------------------------------------------------------

    def create(self, record: Mapping[str, Any], *, wait: bool = True, source_root: Path | None = None) -> str:
        """Record a new workload (`record` has at least id, owner_id, mem_size_mib, fs_size_mib) and
        boot it with its env source's set at this moment (on a fresh root, or a copy of `source_root`)."""
        full = {"state": "booting", "created_at": now_iso(), "deleted_at": None, **record}
        env = dict(self.env_for(full))
        with self._quota_lock:
            self._check_quota(full["owner_id"], 1)
            self.store.save_machine(self.platform, full)
        machine = Machine(self._sandbox(full))
        with self._registry_lock:
            self._machines[full["id"]] = machine
        if not wait:
            threading.Thread(target=self._boot, args=(machine, full, env, source_root, True), daemon=True).start()
            return str(full["id"])
        self._boot(machine, full, env, source_root, True)
        if full["state"] != "running":
            raise BootFailed(f"{self.noun} {full['id']!r} failed to boot; see the server log")
        return str(full["id"])

    def _boot(self, machine: Machine, record: dict[str, Any], env: Mapping[str, str] | None,
              source_root: Path | None, fresh: bool) -> None:
        """Start the sandbox (on a new root when `fresh`), write the env file once unless `env` is None,
        and mark it running (dead on failure)."""
        try:
            if fresh:
                machine.sandbox.create_root(source_root)
            machine.sandbox.boot(timeout=BOOT_TIMEOUT_S)
            if env is not None:
                machine.sandbox.client().write_file(self.delivery.path, self.delivery.render(env),
                                                    mode=self.delivery.mode, create_dirs=True)
                record["env_digest"] = env_digest(env)
            record["state"] = "running"
        except Exception:
            log.exception("%s %s failed to boot", self.noun, record["id"])
            machine.sandbox.stop()
            record["state"] = "dead"
        self.store.save_machine(self.platform, record)
        machine.booted.set()

    def restart(self, owner: str, machine_id: str) -> dict[str, Any]:
        """Stop the workload and boot it again on its root with its env source's current set."""
        record, machine = self._ready(owner, machine_id)
        with machine.lock:
            env = dict(self.env_for(record))
            machine.sandbox.stop()
            machine.booted.clear()
            self._boot(machine, record, env, None, False)
        if record["state"] != "running":
            raise BootFailed(f"{self.noun} {machine_id!r} failed to boot again; see the server log")
        return record

    # -- state, snapshot, deletion ----------------------------------------------------------

    def set_state(self, owner: str, machine_id: str, state: str) -> None:
        """Pause (`paused`/`sleeping`) or resume (`running`) a workload."""
        record, machine = self._ready(owner, machine_id)
        with machine.lock:
            if state in PAUSED_STATES and record["state"] == "running":
                self._pause(machine)
            elif state == "running" and record["state"] in PAUSED_STATES:
                machine.sandbox.resume()
            record["state"] = state
            self.store.save_machine(self.platform, record)

    def snapshot(self, owner: str, machine_id: str, dest: Path, keep_paused: bool = False) -> dict[str, Any]:
        """Copy a workload's root filesystem to `dest` (paused meanwhile); its record."""
        record, machine = self._ready(owner, machine_id)
        with machine.lock:
            was_paused = record["state"] in PAUSED_STATES
            if not was_paused:
                self._pause(machine)
            try:
                machine.sandbox.snapshot(dest)
            finally:
                if not was_paused and not keep_paused:
                    machine.sandbox.resume()
            if keep_paused and not was_paused:
                record["state"] = "paused"
                self.store.save_machine(self.platform, record)
        return record

    def delete(self, owner: str, machine_id: str) -> None:
        """Stop the workload, remove its root filesystem and mark its record deleted."""
        record = self.record(owner, machine_id)
        with self._registry_lock:
            machine = self._machines.pop(machine_id, None)
        if machine is not None:
            machine.booted.wait(BOOT_TIMEOUT_S)
            machine.sandbox.destroy()
        else:
            self._sandbox(record).destroy()
        record["state"] = "dead"
        record["deleted_at"] = now_iso()
        self.store.save_machine(self.platform, record)

    def _pause(self, machine: Machine) -> None:
        try:
            machine.sandbox.pause()
        except CgroupError as exc:
            raise FreezeFailed(f"the {self.noun} could not be paused: {exc}; try again") from None

    # -- guest operations -------------------------------------------------------------------

    def exec(self, owner: str, machine_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run a command inside the workload with the environment a login there gets."""
        machine = self._running(owner, machine_id)
        return dict(_guest(lambda: machine.sandbox.client().exec(**request)))

    def login_env(self, owner: str, machine_id: str) -> dict[str, str]:
        """What a login shell started in the workload sees right now, read from inside it."""
        result = self.exec(owner, machine_id, {"command": ["env", "-0"]})
        if result["exit_code"] != 0:
            raise GuestRefused("io_error", f"env exited with {result['exit_code']} in the {self.noun}")
        entries = (entry.partition("=") for entry in str(result["stdout"]).split("\0") if entry)
        return {key: value for key, _, value in entries}

    def read_file(self, owner: str, machine_id: str, path: str) -> bytes:
        """A file's bytes, from inside the workload's root only."""
        machine = self._running(owner, machine_id)
        content: bytes = _guest(lambda: machine.sandbox.client().read_file(path))
        return content

    def write_file(self, owner: str, machine_id: str, path: str, content: bytes, mode: int, create_dirs: bool) -> None:
        """Write a file inside the workload's root only."""
        machine = self._running(owner, machine_id)
        _guest(lambda: machine.sandbox.client().write_file(path, content, mode=mode, create_dirs=create_dirs))

    # -- server start and stop --------------------------------------------------------------

    def recover(self) -> None:
        """Bring back the workloads recorded before a restart (see the module docstring)."""
        for record in self.list():
            machine = Machine(self._sandbox(record))
            if record["state"] == "booting" or not machine.sandbox.exists():
                record["state"] = "dead"
                self.store.save_machine(self.platform, record)
                machine.booted.set()
                continue
            with self._registry_lock:
                self._machines[record["id"]] = machine
            paused = record["state"] if record["state"] in PAUSED_STATES else None
            self._boot(machine, record, None, None, False)
            if paused and record["state"] == "running":
                machine.sandbox.pause()
                record["state"] = paused
                self.store.save_machine(self.platform, record)

    def shutdown(self) -> None:
        """Stop every sandbox; their roots and records stay for the next start."""
        with self._registry_lock:
            machines = list(self._machines.values())
            self._machines.clear()
        for machine in machines:
            machine.sandbox.stop()


def _guest(call: Callable[[], Any]) -> Any:
    """Run a guest-agent call, turning its refusals into domain errors with the agent's reason."""
    try:
        return call()
    except GuestError as exc:
        raise GuestRefused(exc.code, exc.message) from None
    except AgentUnavailable as exc:
        raise AgentDown(f"the agent did not answer: {exc}") from None

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

A platform may give its workloads deploy phases (`Phase`): each runs before the workload at every
create, restart and recovery, in a sandbox of its own that receives its own set (a build sees the
build-time variables), and stays up so what it saw can be read (`login_env(..., phase)`).

After a server restart, workloads that were `running` boot again from their kept root (keeping the
env file of their last boot, not re-injected, unless the platform's `Delivery` keeps it in memory
only: then it was lost with the sandbox, and the recovery boot writes the stored set again),
`paused`/`sleeping` ones boot and pause again, and those still `booting` when the server stopped are `dead`.

In a cluster (`cluster.Membership`) a workload runs on the node that created it, named in its record
(`node`): an operation on a live workload of another node raises `cluster.Elsewhere`, so the request is
answered there, and the workloads of a node that stopped beating are shown `dead` (their records stay;
the node recovers them when it is back). Each node recovers and stops only its own.

Failures are domain errors (`MachineError` subclasses); each platform maps them to its own statuses
and codes. Nothing here names a platform.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envvars.envfile import render
from envvars_server.cluster.membership import Elsewhere, Membership
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


class UnknownPhase(MachineError):
    """The workload has no deploy phase of that name."""


EnvSource = Callable[[Mapping[str, Any]], Mapping[str, str]]
"""The set a workload receives at boot, from its record (its owner's set, its own set...)."""


@dataclass(frozen=True)
class Delivery:
    """Where a workload's set is written at boot, in which form and with which mode.

    `memory_bytes`: the env file's directory is then a tmpfs of at most that size, mounted by the sandbox
    and part of the workload, so the set lives in the workload's memory only and never on its disk; it is
    gone when the sandbox stops, so a recovery boot after a server restart writes the stored set again.
    """

    path: str
    render: Callable[[Mapping[str, str]], bytes]
    mode: int
    memory_bytes: int | None = None

    @property
    def memory_dirs(self) -> dict[str, int]:
        """The sandbox's memory-only directories for this delivery."""
        return {posixpath.dirname(self.path): self.memory_bytes} if self.memory_bytes else {}


@dataclass(frozen=True)
class Phase:
    """A step of a deploy that runs before the workload itself, in a sandbox of its own that receives its own
    set (a build that sees the build-time variables); it stays up after the step so what it saw can be read."""

    name: str
    env_for: EnvSource


ETC_ENVIRONMENT = Delivery("/etc/environment", lambda env: render(env).encode(), 0o644)
def _environ(env: Mapping[str, str]) -> bytes:
    return b"".join(f"{key}={value}".encode() + b"\0" for key, value in sorted(env.items()))


PROCESS_ENVIRONMENT = Delivery(PROCESS_ENV_FILE, _environ, 0o600)
# A set is at most 4 MiB of keys and values (`envvars.rules.SetLimits`); with `=` and NUL per variable, 8 MiB holds it.
MEMORY_PROCESS_ENVIRONMENT = Delivery(PROCESS_ENV_FILE, _environ, 0o600, memory_bytes=8 * 1024 * 1024)


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
                 max_procs: int = DEFAULT_MAX_PROCS, phases: tuple[Phase, ...] = (), main_phase: str | None = None,
                 membership: Membership | None = None):
        self.store = store
        self.platform = platform
        self.root_dir = root_dir
        self.env_for = env_for
        self.noun = noun
        self.delivery = delivery
        self.max_per_user = max_per_user
        self.max_procs = max_procs
        self.phases = phases
        self.main_phase = main_phase
        self.membership = membership or Membership(store)
        self._machines: dict[str, Machine] = {}
        self._phase_machines: dict[tuple[str, str], Machine] = {}  # (workload id, phase) -> its last step's sandbox
        self._registry_lock = threading.Lock()
        self._quota_lock = threading.Lock()

    def _sandbox(self, record: Mapping[str, Any], phase: str | None = None) -> Sandbox:
        limits = Limits(mem_mib=record["mem_size_mib"], disk_mib=record["fs_size_mib"], max_procs=self.max_procs)
        where = self.root_dir / (record["id"] if phase is None else f"{record['id']}.{phase}")
        return Sandbox(where, limits, memory_dirs=self.delivery.memory_dirs)

    @property
    def phase_names(self) -> tuple[str, ...]:
        """The deploy's phases in order, the workload's own (`main_phase`) last; none without phases."""
        return (*(phase.name for phase in self.phases), self.main_phase) if self.main_phase else ()

    def _run_phases(self, record: Mapping[str, Any]) -> bool:
        """Run each phase before the workload, each in a fresh boot of its own sandbox with its own set; whether
        all booted (the server log says why one did not)."""
        for phase in self.phases:
            with self._registry_lock:
                old = self._phase_machines.pop((record["id"], phase.name), None)
            if old is not None:
                old.sandbox.stop()
            machine = Machine(self._sandbox(record, phase.name))
            try:
                if not machine.sandbox.exists():
                    machine.sandbox.create_root(None)
                machine.sandbox.boot(timeout=BOOT_TIMEOUT_S)
                env = self.env_for_phase(record, phase)
                machine.sandbox.client().write_file(self.delivery.path, self.delivery.render(env),
                                                    mode=self.delivery.mode, create_dirs=True)
            except Exception:
                log.exception("%s %s: its %s phase failed", self.noun, record["id"], phase.name)
                machine.sandbox.stop()
                return False
            machine.booted.set()
            with self._registry_lock:
                self._phase_machines[(record["id"], phase.name)] = machine
        return True

    @staticmethod
    def env_for_phase(record: Mapping[str, Any], phase: Phase) -> dict[str, str]:
        """The set a phase's sandbox receives."""
        return dict(phase.env_for(record))

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
        """Live records, of one owner or of everyone, oldest first, as `shown`."""
        return [self.shown(record) for record in self.store.list_machines(self.platform, owner)]

    def record(self, owner: str, machine_id: str) -> dict[str, Any]:
        """The owner's live record, or NotFound (also for another user's workload)."""
        record = self.store.get_machine(self.platform, owner, machine_id)
        if record is None:
            raise NotFound(f"{self.noun} {machine_id!r} not found")
        return self.shown(record)

    def shown(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record, `dead` when it runs on a node that stopped beating."""
        node = record.get("node")
        if self.membership.is_local(node) or self.membership.url_of(node) is not None:
            return record
        return {**record, "state": "dead"}

    def here(self, record: Mapping[str, Any], what: str) -> None:
        """Return if what `record` names (a workload, a snapshot...; `what` in messages) is on this node;
        `Elsewhere` when it is on another live node, NotRunning when its node stopped beating."""
        node = record.get("node")
        if self.membership.is_local(node):
            return
        url = self.membership.url_of(node)
        if url is None:
            raise NotRunning(f"{what} is dead: node {node}, where it is, stopped answering")
        raise Elsewhere(str(node), url)

    def placed(self) -> dict[str, str]:
        """What a record of something made on this node keeps of where it is (nothing for a single server)."""
        return {"node": self.membership.node_id} if self.membership.node_id else {}

    def _ready(self, owner: str, machine_id: str) -> tuple[dict[str, Any], Machine]:
        """The record and machine of a workload that finished booting."""
        self.here(self.record(owner, machine_id), f"{self.noun} {machine_id!r}")
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
        full = {"state": "booting", "created_at": now_iso(), "deleted_at": None, **self.placed(), **record}
        env = dict(self.env_for(full))
        with self._quota_lock:
            self._check_quota(full["owner_id"], 1)
            self.store.save_machine(self.platform, full)
        machine = Machine(self._sandbox(full))
        with self._registry_lock:
            self._machines[full["id"]] = machine
        if not wait:
            threading.Thread(target=self._deploy, args=(machine, full, env, source_root), daemon=True).start()
            return str(full["id"])
        self._deploy(machine, full, env, source_root)
        if full["state"] != "running":
            raise BootFailed(f"{self.noun} {full['id']!r} failed to boot; see the server log")
        return str(full["id"])

    def _deploy(self, machine: Machine, record: dict[str, Any], env: Mapping[str, str],
                source_root: Path | None) -> None:
        """The phases, then the first boot of the workload (dead if a phase failed)."""
        if self._run_phases(record):
            self._boot(machine, record, env, source_root, True)
            return
        record["state"] = "dead"
        self.store.save_machine(self.platform, record)
        machine.booted.set()

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
            if not self._run_phases(record):
                raise BootFailed(f"{self.noun} {machine_id!r} failed to deploy: a phase before it failed; "
                                 "see the server log")
            env = dict(self.env_for(record))
            machine.booted.clear()  # first: a request arriving now waits for the new boot instead of a stopped one
            machine.sandbox.stop()
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
        """Stop the workload, remove its root filesystem and mark its record deleted (only the record when its node
        stopped beating: that node's disk of it stays)."""
        record = self.record(owner, machine_id)
        try:
            self.here(record, f"{self.noun} {machine_id!r}")
        except NotRunning:
            self.membership.refresh()  # not on this node's last view alone: a node just started or late may live
            try:
                self.here(record, f"{self.noun} {machine_id!r}")
            except NotRunning:
                self._forget(record)
                return
        with self._registry_lock:
            machine = self._machines.pop(machine_id, None)
        if machine is not None:
            machine.booted.wait(BOOT_TIMEOUT_S)
            machine.sandbox.destroy()
        else:
            self._sandbox(record).destroy()
        for phase in self.phases:
            with self._registry_lock:
                step = self._phase_machines.pop((machine_id, phase.name), None)
            (step.sandbox if step else self._sandbox(record, phase.name)).destroy()
        self._forget(record)

    def _forget(self, record: dict[str, Any]) -> None:
        record["state"] = "dead"
        record["deleted_at"] = now_iso()
        self.store.save_machine(self.platform, record)

    def _pause(self, machine: Machine) -> None:
        try:
            machine.sandbox.pause()
        except CgroupError as exc:
            raise FreezeFailed(f"the {self.noun} could not be paused: {exc}; try again") from None

    # -- guest operations -------------------------------------------------------------------

    def exec(self, owner: str, machine_id: str, request: Mapping[str, Any],
             phase: str | None = None) -> dict[str, Any]:
        """Run a command inside the workload (or the sandbox of one of its deploy's phases) with the environment a
        login there gets."""
        machine = self._running(owner, machine_id)
        if phase is not None and phase != self.main_phase:
            machine = self._phase_machine(machine_id, phase)
        return dict(_guest(lambda: machine.sandbox.client().exec(**request)))

    def _phase_machine(self, machine_id: str, phase: str) -> Machine:
        if phase not in self.phase_names:
            known = ", ".join(self.phase_names)
            raise UnknownPhase(f"{self.noun}s have no phase {phase!r}" + (f": they have {known}" if known else
                                                                           ": they have no deploy phases"))
        with self._registry_lock:
            machine = self._phase_machines.get((machine_id, phase))
        if machine is None or not machine.sandbox.is_alive():
            raise NotRunning(f"the {phase} phase of {self.noun} {machine_id!r} is not running")
        return machine

    def login_env(self, owner: str, machine_id: str, phase: str | None = None) -> dict[str, str]:
        """What a login shell started in the workload (or in a phase's sandbox) sees right now, read from inside."""
        result = self.exec(owner, machine_id, {"command": ["env", "-0"]}, phase)
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
        """Bring back this node's workloads recorded before a restart (see the module docstring)."""
        for record in self.store.list_machines(self.platform):
            if not self.membership.is_local(record.get("node")):
                continue
            machine = Machine(self._sandbox(record))
            if record["state"] == "booting" or not machine.sandbox.exists():
                record["state"] = "dead"
                self.store.save_machine(self.platform, record)
                machine.booted.set()
                continue
            with self._registry_lock:
                self._machines[record["id"]] = machine
            paused = record["state"] if record["state"] in PAUSED_STATES else None
            # A set delivered in memory only is gone with the old sandbox: the recovery boot gets the stored set.
            try:
                env = dict(self.env_for(record)) if self.delivery.memory_bytes else None
            except Exception:  # e.g. a stored value that no longer opens: this workload only, not the server
                log.exception("%s %s: its stored set cannot be read; it stays down", self.noun, record["id"])
                record["state"] = "dead"
                self.store.save_machine(self.platform, record)
                machine.booted.set()
                continue
            self._boot(machine, record, env, None, False)
            if record["state"] == "running" and not self._run_phases(record):
                log.warning("%s %s runs, but a phase before it did not come back", self.noun, record["id"])
            if paused and record["state"] == "running":
                machine.sandbox.pause()
                record["state"] = paused
                self.store.save_machine(self.platform, record)

    def shutdown(self) -> None:
        """Stop every sandbox; their roots and records stay for the next start."""
        with self._registry_lock:
            machines = [*self._machines.values(), *self._phase_machines.values()]
            self._machines.clear()
            self._phase_machines.clear()
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

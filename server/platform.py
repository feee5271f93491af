"""What a platform brings to the server: where its API lives, how it answers, and what it runs.

A platform module (or package) declares one `Platform`; `server/platforms/__init__.py` lists them
and `server/app.py` serves every one the same way, so nothing shared names a platform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from envvars_server.clock import Clock
from envvars_server.cluster import Membership
from envvars_server.errors import Envelope
from envvars_server.machines import (
    DEFAULT_MAX_PER_USER,
    DEFAULT_MAX_PROCS,
    ETC_ENVIRONMENT,
    Delivery,
    EnvSource,
    Machines,
    Phase,
)
from envvars_server.store import Cipher, Store
from envvars_server.workloads import Workloads


@dataclass(frozen=True)
class Runtime:
    """What a platform's machinery may use: the store, the data dir, the server's at-rest cipher, options and
    clock; where it offers its workloads on the neutral surface (`workloads[name]`); the cluster it is a node of,
    if any."""

    app: FastAPI
    store: Store
    data_dir: Path
    cipher: Cipher
    options: Mapping[str, Any] = field(default_factory=dict)
    workloads: dict[str, Workloads] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)
    workload_options: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)  # by platform
    membership: Membership | None = None

    def encrypt_at_rest(self, platform: str) -> None:
        """Seal `platform`'s values in the store from now on (AES-256-GCM under the server's key: `at_rest.py`)."""
        self.store.use_cipher(platform, self.cipher)

    def own_sets(self, platform: str) -> EnvSource:
        """The env source of workloads that each have a set of their own (the store's scope is the workload's id)."""
        return lambda record: self.store.get_vars(platform, record["owner_id"], record["id"])

    @contextmanager
    def serving(self, machines: Machines, kind: str, new_record: Callable[..., dict[str, Any]]) -> Iterator[None]:
        """Offer a platform's workloads on the neutral surface as `kind` (a new one's record from (owner, name) and
        the platform's `workload_options` as keywords), recover those of a previous run, and stop them all when the
        server stops."""
        options = self.workload_options.get(machines.platform, {})
        self.workloads[machines.platform] = Workloads(machines, kind, new_record, options)
        machines.recover()
        try:
            yield
        finally:
            machines.shutdown()

    def machines(self, platform: str, subdir: str, noun: str, env_for: EnvSource,
                 delivery: Delivery = ETC_ENVIRONMENT, phases: tuple[Phase, ...] = (),
                 main_phase: str | None = None) -> Machines:
        """A workloads layer for `platform`, its roots under `data_dir/subdir`, with the server's limits
        (options `max_workloads_per_user`, per platform, and `max_procs`, per workload); `phases` run before
        each boot of a workload, which is itself the phase `main_phase`."""
        return Machines(self.store, platform, self.data_dir / subdir, env_for, noun, delivery,
                        max_per_user=self.options.get("max_workloads_per_user") or DEFAULT_MAX_PER_USER,
                        max_procs=self.options.get("max_procs") or DEFAULT_MAX_PROCS, phases=phases,
                        main_phase=main_phase, membership=self.membership)


@dataclass(frozen=True)
class Platform:
    """One platform of the reference server."""

    name: str
    title: str
    envelope: Envelope
    routers: tuple[APIRouter, ...]
    run: Callable[[Runtime], AbstractContextManager[None]] | None = None
    """Started with the server and stopped with it (its workloads: recovered, then shut down)."""
    workload_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """What a new workload of the platform takes on the neutral surface besides its name, each option with its
    values, the first the default (given to its record's maker by `Runtime.serving`)."""

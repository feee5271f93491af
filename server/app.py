"""The FastAPI application: the platforms' routers, bearer auth and per-platform error envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from envvars.rules import SetLimits
from envvars_server.auth import BearerAuth
from envvars_server.errors import install_error_handlers
from envvars_server.faults import FaultInjector
from envvars_server.inputs import StrictInput
from envvars_server.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from envvars_server.platforms import vers, vers_vm
from envvars_server.slots import UserSlots
from envvars_server.store import Store

# Adding a platform: its module, and one line here.
PLATFORMS = [vers, vers_vm]


def create_app(
    data_dir: Path, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, faults: bool = False,
    set_limits: SetLimits | None = None, vm_slots: UserSlots | None = None, **vm_limits: int,
) -> FastAPI:
    """Build the server for one data dir (SQLite file, VM disks, commits); `faults` is for tests only.

    `vm_limits`: `max_vms_per_user` and `max_procs` (per VM), see `server/orchestrator.py`.
    """
    store = Store(data_dir, set_limits)
    orchestrator = vers_vm.make_orchestrator(store, data_dir, **vm_limits)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        orchestrator.recover()
        yield
        orchestrator.shutdown()

    app = FastAPI(
        title="envvars reference server",
        description="The documented env-var APIs of Vers, Hoody, Sevalla, Vertra and Phala, on loopback.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.orchestrator = orchestrator
    app.state.vm_slots = vm_slots or UserSlots()
    envelopes = [platform.ENVELOPE for platform in PLATFORMS]
    for platform in PLATFORMS:
        app.include_router(platform.router)
    install_error_handlers(app, envelopes)
    # Outermost last: faults (tests only), auth before any body is read, the body limit, strict input.
    app.add_middleware(StrictInput, envelopes=envelopes)  # reads whole bodies: only inside the body limit
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, envelopes=envelopes)
    app.add_middleware(BearerAuth, store=store, envelopes=envelopes)
    if faults:
        app.add_middleware(FaultInjector, envelopes=envelopes)
    return app
